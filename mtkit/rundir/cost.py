"""Inference cost: the run's model against its bare backbone on one fixed batch (time and operation count), recorded in
the run directory.

The batch is the first examples of every task's held-out split, at most 128 tokens each (the same in every variant of
a sweep). Each
configuration runs the backbone pass with its adapters (heads excluded: they are the same everywhere) under the
combiner of the run's last phase; rounds alternate between the configurations so that a machine slowing down or
speeding up in between weighs on all alike, and a ratio is the median over rounds of the per-round ratio. On a CPU
the clock is this process's CPU time, which other processes on a shared machine barely disturb. As deployed, the
model is merged into the base weights where that is possible (one adapter for every task, or a merging combiner), which costs exactly the
bare backbone; otherwise it runs unmerged.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from mtkit.api.errors import MtkitError
from mtkit.data.tasks import TaskData
from mtkit.model.multitask import MultiTaskModel

__all__ = ["FILE", "measure_inference"]

FILE = "inference.json"
MAX_TOKENS = 128  # the timed batch's width: a ratio against the bare backbone barely moves with length, the minutes do


def _batch(model: MultiTaskModel, tasks: Mapping[str, TaskData], per_task: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The first `per_task` held-out examples of every task, right-padded into one mixed batch and cut to its first
    `MAX_TOKENS` positions."""
    tokenizer = model.backbone.tokenizer
    heads: Mapping[str, Any] = model.heads  # type: ignore[assignment]
    parts = [(name, heads[name].collate(data.eval[:per_task], tokenizer)) for name, data in tasks.items() if len(data.eval)]
    width = max(batch["input_ids"].shape[1] for _, batch in parts)
    ids = torch.cat([F.pad(b["input_ids"], (0, width - b["input_ids"].shape[1]), value=model.pad_token_id) for _, b in parts])
    mask = torch.cat([F.pad(b["attention_mask"], (0, width - b["attention_mask"].shape[1]), value=0) for _, b in parts])
    task_ids = torch.cat([torch.full((b["input_ids"].shape[0],), model.task_names.index(n), dtype=torch.long) for n, b in parts])
    ids, mask = ids[:, :MAX_TOKENS], mask[:, :MAX_TOKENS]
    return ids.to(device), mask.to(device), task_ids.to(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Milliseconds of one call: this process's CPU time on a CPU (other processes on a shared machine barely
    disturb it), wall-clock time on a GPU (synchronised)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        return (time.perf_counter() - start) * 1000.0
    start = time.process_time()
    fn()
    return (time.process_time() - start) * 1000.0


def _flops(fn: Callable[[], Any]) -> int:
    """Floating-point operations of one call, counted by torch (matrix products; element-wise work is left out)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _rounds(runs: Mapping[str, Callable[[], Any]], repeats: int, warmup: int, device: torch.device) -> dict[str, float]:
    """Per configuration, the median time; and per configuration but `bare`, the median over rounds of its time
    over the bare backbone's in the same round (`<name>/bare`)."""
    for fn in runs.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(_timed(fn, device))
    out = {name: statistics.median(values) for name, values in times.items()}
    for name in runs:
        if name != "bare":
            out[f"{name}/bare"] = statistics.median(t / b for t, b in zip(times[name], times["bare"], strict=True))
    return out


@torch.no_grad()
def measure_inference(
    model: MultiTaskModel, tasks: Mapping[str, TaskData], combiner: str, *, per_task: int = 4, repeats: int = 5, warmup: int = 1
) -> dict[str, Any]:
    """Milliseconds and floating-point operations per backbone pass over a fixed mixed batch: the bare backbone,
    the model as evaluated, and the model merged into the base weights (where it can be).

    Returns what `inference.json` records: `relative` (the median over rounds of the deployed model's time over the
    bare backbone's in the same round) and `relative_flops` compare the deployed model (merged where it can be) with
    the bare backbone. Operation counts do not depend on what else the machine runs; times do, a little.
    """
    device = next(model.parameters()).device
    ids, mask, task_ids = _batch(model, tasks, per_task, device)
    was_training = model.training
    model.eval()

    def bare() -> Any:
        with model.adapters_disabled():
            return model.backbone(ids, mask)

    def adapted() -> Any:
        return model.run_backbone(ids, mask, task_ids)

    try:
        with model.use_combiner(combiner):
            flops = {"bare": _flops(bare), "model": _flops(adapted)}
            times = _rounds({"bare": bare, "model": adapted}, repeats, warmup, device)
            merged = _merged_times(model, bare, adapted, repeats, warmup, device)
    finally:
        model.train(was_training)
    deployed = merged["model/bare"] if merged else times["model/bare"]
    deployed_flops = merged["flops"] if merged else flops["model"]
    return {
        "batch_size": int(ids.shape[0]),
        "tokens": int(ids.shape[1]),
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "clock": "wall" if device.type == "cuda" else "process_cpu",
        "combiner": combiner,
        "merged": merged.get("adapter") if merged else None,
        "bare_ms": round(times["bare"], 3),
        "model_ms": round(times["model"], 3),
        "merged_ms": round(merged["model"], 3) if merged else None,
        "bare_flops": flops["bare"],
        "model_flops": flops["model"],
        "merged_flops": merged["flops"] if merged else None,
        "relative": round(deployed, 4),
        "relative_flops": round(deployed_flops / flops["bare"], 4),
    }


def _merged_times(
    model: MultiTaskModel, bare: Callable[[], Any], adapted: Callable[[], Any], repeats: int, warmup: int, device: torch.device
) -> dict[str, Any]:
    """Times with the model merged into the base weights (against the bare backbone again), or {} if it cannot merge."""
    weights: dict[str, torch.Tensor] = {site: model.backbone.get_submodule(site).weight for site in model.site_adapters()}  # type: ignore[misc]
    saved = {site: weight.detach().clone() for site, weight in weights.items()}
    try:
        adapter = model.merge_adapters()
    except MtkitError:
        return {}
    try:
        times: dict[str, Any] = _rounds({"bare": bare, "model": adapted}, repeats, warmup, device)
        times["flops"] = _flops(adapted)
    finally:
        model.unmerge_adapters()
        for site, weight in saved.items():  # exactly the weights from before (folding and unfolding round)
            weights[site].copy_(weight)
    # Merged, the "bare" pass runs on the folded weights: the same work as the bare backbone's.
    return {**times, "adapter": adapter}
