"""Inference cost of combiners over 5 LoRA adapters on the packaged MiniLM, as ratios to the bare backbone.

    python -m benchmarks.bench_combiners [--repeats 15] [--batch 32] [--length 128] [--threads 2]

Every configuration runs one forward pass per repeat, interleaved (so load changes on a shared
machine hit all of them alike); each figure is the median over repeats of its time divided by the
bare backbone's time in the same repeat, with the 25th-75th percentile of that ratio as the noise.
PEFT (unmerged LoRA, and its mixed-adapter batch with `adapter_names=`) is the reference.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from mtkit import TaskInfo, load_registry
from mtkit.build import build_model
from mtkit.model import MultiTaskModel
from mtkit.resolve import resolve

ADAPTERS = 5
BACKBONE = {"type": "hf_encoder", "model": "all-MiniLM-L6-v2"}
LORA = {"type": "lora", "rank": 8, "alpha": 16, "target_modules": ["query", "value"], "init": "random"}


def mtkit_model(combiner: dict[str, Any], adapters: int) -> MultiTaskModel:
    """MiniLM with `adapters` random-init LoRAs (one per task) under `combiner`, in eval mode."""
    names = [f"task{i}" for i in range(adapters)]
    recipe = {
        "backbone": BACKBONE,
        "adapters": {n: dict(LORA) for n in names},
        "combiner": combiner,
        "tasks": {n: {"dataset": {"type": "rotten_tomatoes"}, "head": {"type": "classification"}} for n in names},
        "phases": [{"name": "p", "steps": 1, "train": ["adapters"]}],
    }
    registry = load_registry()
    resolved = resolve(recipe, registry, "bench")
    infos = {n: TaskInfo(n, i, ("a", "b")) for i, n in enumerate(names)}
    return build_model(resolved, infos).eval()


def peft_model(base: torch.nn.Module, adapters: int) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], init_lora_weights=False)
    model = get_peft_model(copy.deepcopy(base), config, adapter_name="task0")
    for i in range(1, adapters):
        model.add_adapter(f"task{i}", config)
    return model.eval()


def cases(batch: int, length: int) -> dict[str, Callable[[], Any]]:
    torch.manual_seed(0)
    bare = mtkit_model({"type": "oracle"}, 1).backbone  # the same MiniLM, with its hooks removed below
    for module in bare.modules():
        module._forward_hooks.clear()
    vocab = bare.model.config.vocab_size
    ids = torch.randint(1000, vocab, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.long)
    tasks = torch.arange(batch) % ADAPTERS
    one = mtkit_model({"type": "oracle"}, 1)
    oracle = mtkit_model({"type": "oracle"}, ADAPTERS)
    router = mtkit_model({"type": "router"}, ADAPTERS)
    weighted = mtkit_model({"type": "weighted"}, ADAPTERS)
    fusion = mtkit_model({"type": "fusion_attention"}, ADAPTERS)
    peft_one = peft_model(bare.model, 1)
    peft_mixed = peft_model(bare.model, ADAPTERS)
    names = [f"task{int(t)}" for t in tasks]

    def learned(model: MultiTaskModel) -> Callable[[], Any]:
        def run() -> Any:
            with model.routing("learned"):
                return model.run_backbone(ids, mask, tasks)

        return run

    return {
        "bare backbone": lambda: bare(ids, mask),
        "mtkit 1 LoRA (unmerged)": lambda: one.run_backbone(ids, mask, torch.zeros_like(tasks)),
        "peft 1 LoRA (unmerged)": lambda: peft_one(input_ids=ids, attention_mask=mask),
        "mtkit oracle, 5 LoRA mixed batch": lambda: oracle.run_backbone(ids, mask, tasks),
        "peft mixed batch, 5 LoRA (adapter_names)": lambda: peft_mixed(input_ids=ids, attention_mask=mask, adapter_names=names),
        "router, 5 LoRA": learned(router),
        "weighted, 5 LoRA": learned(weighted),
        "fusion_attention, 5 LoRA": learned(fusion),
    }


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = cases(args.batch, args.length)
    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.inference_mode():
        for _ in range(args.warmup):
            for run in runs.values():
                run()
        for repeat in range(args.repeats):
            order = list(runs.items())
            order = order[repeat % len(order) :] + order[: repeat % len(order)]  # rotate who goes first
            for name, run in order:
                tic = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - tic)
    bare = times["bare backbone"]
    one = times["mtkit 1 LoRA (unmerged)"]
    print(f"batch {args.batch}, length {args.length}, {args.threads} threads, {args.repeats} interleaved repeats after {args.warmup} warm-up")
    print(f"{'configuration':44} {'median ms':>10} {'x bare':>8} {'(p25-p75)':>14} {'x 1 LoRA':>9}")
    for name, values in times.items():
        ratios = [v / b for v, b in zip(values, bare, strict=True)]
        versus_one = statistics.median(v / o for v, o in zip(values, one, strict=True))
        spread = f"({quantile(ratios, 0.25):.3f}-{quantile(ratios, 0.75):.3f})"
        print(f"{name:44} {1000 * statistics.median(values):10.1f} {statistics.median(ratios):8.3f} {spread:>14} {versus_one:9.3f}")
    noise = statistics.median(abs(a - b) / b for a, b in zip(bare[1:], bare[:-1], strict=True))
    print(f"noise: the bare backbone's time changes by a median {100 * noise:.1f}% between consecutive repeats")


if __name__ == "__main__":
    main()
