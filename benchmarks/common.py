"""What the benchmarks share: models on one set of backbone weights, interleaved timing, ratio statistics, peak memory.

Every model of a run reads the same backbone tensors (mtkit models and PEFT models alike), so differences in
where weights happen to sit in memory never show up as differences between configurations.
"""

from __future__ import annotations

import copy
import ctypes
import gc
import os
import re
import statistics
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import transformers
from torch import nn

from mtkit import Backbone, Registry, TaskInfo, load_registry
from mtkit.model.build import build_model
from mtkit.model.multitask import MultiTaskModel
from mtkit.recipe.resolve import resolve, routing_path

BACKBONE = {"type": "hf_encoder", "model": "all-MiniLM-L6-v2"}
LORA = {"type": "lora", "rank": 8, "alpha": 16, "target_modules": ["query", "value"], "init": "random"}
BOTTLENECK = {"type": "bottleneck", "init": "random"}  # pfeiffer placement: each FFN output, 384 -> 24 -> 384 on MiniLM


class Bench:
    """Builds the models of one benchmark run on a single copy of the backbone's weights."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = torch.device(device)
        transformers.utils.logging.disable_progress_bar()  # one bar per model built would bury the tables
        warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
        self.registry: Registry = load_registry()
        cls = self.registry.component_class("backbone", BACKBONE["type"])
        self.bare: Backbone = cls(cls.config_class.model_validate({k: v for k, v in BACKBONE.items() if k != "type"}))
        self.bare.requires_grad_(False).eval().to(self.device)
        self._weights = self.bare.state_dict()

    def share(self, module: nn.Module) -> None:
        """Point a copy of the backbone (or of the transformers model inside it) at the shared weights."""
        hf_model = isinstance(module, type(self.bare.model))
        module.load_state_dict(self.bare.model.state_dict() if hf_model else self._weights, assign=True)
        module.requires_grad_(False)

    def model(self, adapters: Mapping[str, Mapping[str, Any]], combiner: Mapping[str, Any], tasks: Mapping[str, str | None]) -> MultiTaskModel:
        """An mtkit model: `tasks` maps each task to its adapter (None: none); evaluation mode."""
        recipe = {
            "backbone": dict(BACKBONE),
            "adapters": {name: dict(table) for name, table in adapters.items()},
            "combiner": dict(combiner),
            "tasks": {
                task: {"dataset": {"type": "rotten_tomatoes"}, "head": {"type": "classification"}, **({"adapter": a} if a else {})}
                for task, a in tasks.items()
            },
            "phases": [{"name": "p", "steps": 1, "train": ["adapters"]}],
        }
        infos = {task: TaskInfo(task, i, ("a", "b")) for i, task in enumerate(tasks)}
        model = build_model(resolve(recipe, self.registry, "benchmark"), infos).to(self.device)
        self.share(model.backbone)
        return model.eval()

    def peft(self, adapters: int, rank: int = 8) -> Any:
        """PEFT LoRA adapters task0..task{n-1} (rank 8, q/v, random B) on the shared weights; evaluation mode."""
        from peft import LoraConfig, get_peft_model

        base = copy.deepcopy(self.bare.model)
        self.share(base)
        config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["query", "value"], init_lora_weights=False)
        model = get_peft_model(base, config, adapter_name="task0")
        for i in range(1, adapters):
            model.add_adapter(f"task{i}", config)
        return model.to(self.device).eval()


def training_step(
    model: MultiTaskModel, ids: torch.Tensor, mask: torch.Tensor, task_ids: torch.Tensor, routing: str, train: tuple[str, ...] = ("adapters.", "combiner.")
) -> Callable[[], object]:
    """One optimiser step of the parameters under `train` (name prefixes) as a call: a forward pass under `routing`, a
    loss on the output plus the combiner's auxiliary losses, backward, AdamW."""
    model.train()
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(train))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def run() -> object:
        with model.use_combiner(routing_path(routing)):
            hidden = model.run_backbone(ids, mask, task_ids).hidden
        loss = hidden.pow(2).mean() + sum(model.aux_losses.values(), torch.zeros(()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return None

    return run


def interleaved(
    cases: Mapping[str, Callable[[], object]],
    repeats: int,
    warmup: int,
    progress: bool = True,
    collect: bool = True,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds per call of each case, `repeats` rounds that each time every case once in a rotating order (after a
    garbage collection, with `collect`, so that no collection lands inside a timed call). `clock`: wall time, or
    `time.process_time` (this process's CPU time, which other processes on a shared machine disturb far less)."""
    names = list(cases)
    if collect:
        gc.collect()
        gc.freeze()  # the objects alive now are not scanned again: the collection before each call stays short
    for _ in range(warmup):
        for name in names:
            cases[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            if collect:
                gc.collect()
            tic = clock()
            cases[name]()
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # a GPU call returns before its kernels finish
            times[name].append(clock() - tic)
        if progress:
            print(f"  round {r + 1}/{repeats}", end="\r", flush=True)
    if collect:
        gc.unfreeze()
    return times


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1] if len(values) > 1 else values[0]


def ratios(values: list[float], reference: list[float]) -> tuple[float, float, float]:
    """Median, 25th and 75th percentile of the per-round ratios values / reference."""
    per_round = [v / r for v, r in zip(values, reference, strict=True)]
    return statistics.median(per_round), quantile(per_round, 0.25), quantile(per_round, 0.75)


def track_freed_memory() -> None:
    """Make freed tensors leave the resident set at once (glibc: every allocation over 64 KiB its own mapping), so
    that the peak resident set of a call is its peak tensor memory. Call before allocating, in a process that
    only measures memory: it slows allocation down."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD (and no dynamic raising of it)
    libc.mallopt(-1, 0)  # M_TRIM_THRESHOLD


def _status(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.MULTILINE).group(1)) * 1024  # type: ignore[union-attr]


def peak_bytes(call: Callable[[], object]) -> int:
    """Bytes the resident set grows by at its peak during `call` (Linux: the peak is reset through clear_refs)."""
    gc.collect()
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")
    result = call()
    peak = _status("VmHWM")
    del result
    return max(0, peak - before)
