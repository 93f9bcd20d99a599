"""Inference cost of combiners over 5 LoRA adapters on the packaged MiniLM, as ratios to the bare backbone.

    python -m benchmarks.bench_combiners [--repeats 15] [--batch 32] [--length 128] [--threads 1]

Every configuration runs one forward pass per repeat, interleaved (so load changes on a shared
machine hit all of them alike); each figure is the median over repeats of its time divided by the
bare backbone's time in the same repeat, with the 25th-75th percentile of that ratio as the noise.
All models read one copy of the backbone's weights. PEFT (unmerged LoRA, and its mixed-adapter
batch with `adapter_names=`) is the reference; fusion_attention also runs over 3 bottleneck adapters
(pfeiffer placement), AdapterFusion's own setting.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import BOTTLENECK, LORA, Bench, interleaved, ratios
from mtkit.model.multitask import MultiTaskModel

ADAPTERS = 5


def cases(bench: Bench, batch: int, length: int) -> dict[str, Callable[[], Any]]:
    torch.manual_seed(0)
    ids = torch.randint(1000, bench.bare.model.config.vocab_size, (batch, length)).to(bench.device)
    mask = torch.ones(batch, length, dtype=torch.long, device=bench.device)
    tasks = (torch.arange(batch) % ADAPTERS).to(bench.device)
    loras = {f"task{i}": dict(LORA) for i in range(ADAPTERS)}
    own = {f"task{i}": f"task{i}" for i in range(ADAPTERS)}

    def model(combiner: dict[str, Any], adapters: dict[str, Any] = loras, task_adapters: dict[str, Any] = own) -> MultiTaskModel:
        return bench.model(adapters, combiner, task_adapters)

    def learned(m: MultiTaskModel, task_ids: torch.Tensor = tasks) -> Callable[[], Any]:
        def run() -> Any:
            with m.use_combiner("combiner"):
                return m.run_backbone(ids, mask, task_ids)

        return run

    one = bench.model({"task0": dict(LORA)}, {"type": "oracle"}, {"task0": "task0"})
    oracle = model({"type": "oracle"})
    peft_one, peft_mixed = bench.peft(1), bench.peft(ADAPTERS)
    names = [f"task{int(t)}" for t in tasks]
    bottlenecks = {f"task{i}": dict(BOTTLENECK) for i in range(3)}
    fusion_bottleneck = model({"type": "fusion_attention"}, bottlenecks, {f"task{i}": f"task{i}" for i in range(3)})
    return {
        "bare backbone": lambda: bench.bare(ids, mask),
        "mtkit 1 LoRA (unmerged)": lambda: one.run_backbone(ids, mask, torch.zeros_like(tasks)),
        "peft 1 LoRA (unmerged)": lambda: peft_one(input_ids=ids, attention_mask=mask),
        "mtkit oracle, 5 LoRA mixed batch": lambda: oracle.run_backbone(ids, mask, tasks),
        "peft mixed batch, 5 LoRA (adapter_names)": lambda: peft_mixed(input_ids=ids, attention_mask=mask, adapter_names=names),
        "router, 5 LoRA": learned(model({"type": "router"})),
        "router top-2, 5 LoRA": learned(model({"type": "router", "top_k": 2})),
        "weighted, 5 LoRA": learned(model({"type": "weighted"})),
        "gating, 5 LoRA": learned(model({"type": "gating"})),
        "fusion_attention, 5 LoRA": learned(model({"type": "fusion_attention"})),
        "fusion_attention per_task, 5 LoRA": learned(model({"type": "fusion_attention", "per_task": True})),
        "fusion_attention, 3 bottleneck": learned(fusion_bottleneck, (torch.arange(batch) % 3).to(bench.device)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 gives steadier ratios on a shared machine)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (benchmarks/gpu_check.py runs it there)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = cases(Bench(args.device), args.batch, args.length)
    with torch.inference_mode():
        times = interleaved(runs, args.repeats, args.warmup)
    bare = times["bare backbone"]
    one = times["mtkit 1 LoRA (unmerged)"]
    print(f"\n{args.device}, batch {args.batch}, length {args.length}, {args.threads} thread(s), {args.repeats} interleaved repeats after {args.warmup} warm-up")
    print(f"{'configuration':44} {'median ms':>10} {'x bare':>8} {'(p25-p75)':>14} {'x 1 LoRA':>9}")
    for name, values in times.items():
        median, low, high = ratios(values, bare)
        print(f"{name:44} {1000 * statistics.median(values):10.1f} {median:8.3f} {f'({low:.3f}-{high:.3f})':>14} {ratios(values, one)[0]:9.3f}")
    noise = statistics.median(abs(a - b) / b for a, b in zip(bare[1:], bare[:-1], strict=True))
    print(f"noise: the bare backbone's time changes by a median {100 * noise:.1f}% between consecutive repeats")


if __name__ == "__main__":
    main()
