"""Composing libraries of LoRA adapters on the packaged MiniLM: cost per forward pass (and training step) as N grows.

    python -m benchmarks.bench_library [--sizes 1,5,20,100] [--repeats 7] [--threads 1] [--section all]

For N = 1, 5, 20, 100 LoRA adapters (rank 8 on query/value of all-MiniLM-L6-v2, batch 32 x 128 tokens) it times,
in inference: the oracle's mixed batch (sample i uses adapter i mod N, so min(N, 32) distinct adapters), the
router with top_k 1 and 2, the soft router (every adapter weighted), fusion_attention, and PEFT's mixed batch
(`adapter_names=`) with the same distinct adapters as the oracle; each as x the bare backbone and x one unmerged
LoRA. The router stands in for a trained one that spreads a batch over many adapters (see `spread_router`); the
`used` column is how many distinct adapters the batch uses. Then fusion_attention over 3 bottleneck adapters
(pfeiffer placement); the combiners that reuse a frozen library (`--section reuse`: lorahub, retrieval, phatgoose,
cat, layer_gates); `layer_gates` against PEFT's X-LoRA on SmolLM2 (`--section xlora`, equal outputs checked first);
training steps at N = 5 (oracle, router top-2, fusion_attention) against one LoRA's; the
two exact ways to apply sparse per-sample weights at one site, which `mtkit.api.combiner.gathers` picks between; and
each configuration's peak memory (the growth of the resident set in one forward pass or training step, measured
in a separate process: see `benchmarks.common.track_freed_memory`).

Every configuration runs once per repeat, interleaved in a rotating order, so load from other processes hits all
of them alike; a ratio is the median over repeats of the per-repeat ratio, with its 25th-75th percentile.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import BOTTLENECK, LORA, Bench, interleaved, peak_bytes, ratios, track_freed_memory, training_step
from mtkit import LowRank, lowrank
from mtkit.api.combiner import gathers
from mtkit.model.multitask import MultiTaskModel

BARE, ONE, PEFT_ONE = "bare backbone", "mtkit 1 LoRA (unmerged)", "peft 1 LoRA (unmerged)"
FUSION_BOTTLENECK = "fusion_attention, 3 bottleneck"


@dataclass
class Case:
    """One configuration: what to call, its library size, how many distinct adapters one batch uses, its weights."""

    run: Callable[[], object]
    size: int | None = None  # N, None for the references
    used: int | None = None
    adapter_bytes: int = 0


def library(n: int) -> dict[str, dict[str, Any]]:
    return {f"task{i}": dict(LORA) for i in range(n)}


def oracle_tasks(n: int, batch: int) -> dict[str, str | None]:
    """Tasks task0..task{m-1}, m = min(N, batch), each served by its own adapter."""
    return {f"task{i}": f"task{i}" for i in range(min(n, batch))}


def adapter_bytes(model: torch.nn.Module, peft: bool = False) -> int:
    """Bytes of the parameters besides the backbone (and the heads, which no configuration here runs)."""
    mine = (lambda name: "lora_" in name) if peft else (lambda name: name.startswith(("adapters.", "combiner.")))
    return sum(p.numel() * p.element_size() for name, p in model.named_parameters() if mine(name))


def spread_router(model: MultiTaskModel, ids: torch.Tensor, mask: torch.Tensor, tasks: torch.Tensor) -> None:
    """Stand in for a trained router, which sends different inputs to different adapters: a fresh one scores every
    input alike (its features share one large component), so its output layer is redrawn (std 1) and its bias set
    to cancel the features' mean over this batch."""
    layer = model.combiner.mlp[-1]
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda module, args, output: seen.append(args[0].detach()))
    try:
        with torch.inference_mode(), model.use_combiner("combiner"):
            model.run_backbone(ids, mask, tasks)
    finally:
        handle.remove()
    with torch.no_grad():
        torch.manual_seed(0)
        layer.weight.normal_(std=1.0)
        layer.bias.copy_(-layer.weight @ seen[0].mean(0))


def learned(model: MultiTaskModel, ids: torch.Tensor, mask: torch.Tensor, tasks: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with model.use_combiner("combiner"):
            return model.run_backbone(ids, mask, tasks)

    return run


def routed_adapters(model: MultiTaskModel, ids: torch.Tensor, mask: torch.Tensor, tasks: torch.Tensor, top_k: int | None) -> int:
    """Distinct adapters a batch uses under the model's combiner (top_k per sample, or all with a non-zero weight)."""
    with torch.inference_mode(), model.use_combiner("combiner"), model.recording_routing() as log:
        model.run_backbone(ids, mask, tasks)
    probs = log[-1]
    chosen = probs.topk(top_k, dim=-1).indices if top_k else probs.ne(0).nonzero()[:, 1]
    return int(chosen.unique().numel())


def inference_cases(bench: Bench, sizes: list[int], batch: int, length: int) -> dict[str, Case]:
    torch.manual_seed(0)
    vocab = bench.bare.model.config.vocab_size
    ids = torch.randint(1000, vocab, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.long)
    one = bench.model(library(1), {"type": "oracle"}, {"task0": "task0"})
    peft_one = bench.peft(1)
    zeros = torch.zeros(batch, dtype=torch.long)
    cases = {
        BARE: Case(lambda: bench.bare(ids, mask)),
        ONE: Case(lambda: one.run_backbone(ids, mask, zeros), used=1, adapter_bytes=adapter_bytes(one)),
        PEFT_ONE: Case(lambda: peft_one(input_ids=ids, attention_mask=mask), used=1, adapter_bytes=adapter_bytes(peft_one, peft=True)),
    }
    for n in sizes:
        tasks = oracle_tasks(n, batch)
        task_ids = torch.arange(batch) % len(tasks)
        oracle = bench.model(library(n), {"type": "oracle"}, tasks)
        cases[f"N={n} oracle mixed batch"] = Case(
            lambda m=oracle, t=task_ids: m.run_backbone(ids, mask, t), n, len(tasks), adapter_bytes(oracle)
        )
        for k in (1, 2):
            router = bench.model(library(n), {"type": "router", "top_k": k}, tasks)
            spread_router(router, ids, mask, task_ids)
            used = routed_adapters(router, ids, mask, task_ids, min(k, n))
            cases[f"N={n} router top-{k}"] = Case(learned(router, ids, mask, task_ids), n, used, adapter_bytes(router))
        soft = bench.model(library(n), {"type": "router", "gumbel": False, "dropout": 0.0}, tasks)
        soft.combiner.train()  # the router's training forward: softmax weights over every adapter (no Gumbel noise here)
        cases[f"N={n} soft router"] = Case(learned(soft, ids, mask, task_ids), n, n, adapter_bytes(soft))
        fusion = bench.model(library(n), {"type": "fusion_attention"}, tasks)
        cases[f"N={n} fusion_attention"] = Case(learned(fusion, ids, mask, task_ids), n, n, adapter_bytes(fusion))
        peft = bench.peft(n)
        names = [f"task{int(t)}" for t in task_ids]
        cases[f"N={n} peft mixed batch"] = Case(
            lambda m=peft, a=names: m(input_ids=ids, attention_mask=mask, adapter_names=a),
            n,
            len(set(names)),
            adapter_bytes(peft, peft=True),
        )
    adapters = {f"task{i}": dict(BOTTLENECK) for i in range(3)}
    fusion = bench.model(adapters, {"type": "fusion_attention"}, {f"task{i}": f"task{i}" for i in range(3)})
    cases[FUSION_BOTTLENECK] = Case(learned(fusion, ids, mask, torch.arange(batch) % 3), None, 3, adapter_bytes(fusion))
    return cases


def reuse_cases(bench: Bench, sizes: list[int], batch: int, length: int) -> dict[str, Case]:
    """The combiners that reuse a frozen library, each with what its routine would have learned drawn at random so
    that it spreads a batch over the library: lorahub (one composed LoRA, unmerged), retrieval top-1 (per sample, from
    the input embeddings), phatgoose top-2 (per token and site), cat (dense per site), layer_gates dense and top-2
    (per token and site, after a frozen pass)."""
    torch.manual_seed(0)
    ids = torch.randint(1000, bench.bare.model.config.vocab_size, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.long)
    one = bench.model(library(1), {"type": "oracle"}, {"task0": "task0"})
    zeros = torch.zeros(batch, dtype=torch.long)
    cases = {
        BARE: Case(lambda: bench.bare(ids, mask)),
        ONE: Case(lambda: one.run_backbone(ids, mask, zeros), used=1, adapter_bytes=adapter_bytes(one)),
    }
    combiners = {
        "lorahub (unmerged)": {"type": "lorahub"},
        "retrieval top-1": {"type": "retrieval", "source": "embeddings", "top_k": 1},
        "phatgoose top-2": {"type": "phatgoose", "top_k": 2},
        "cat": {"type": "cat"},
        "layer_gates dense": {"type": "layer_gates"},
        "layer_gates top-2": {"type": "layer_gates", "top_k": 2},
    }
    for n in sizes:
        tasks = oracle_tasks(n, batch)
        task_ids = torch.arange(batch) % len(tasks)
        for label, table in combiners.items():
            model = bench.model(library(n), table, tasks)
            with torch.no_grad():
                if table["type"] == "lorahub":
                    model.combiner.lorahub_weights.normal_(std=0.5)
                if table["type"] == "retrieval":
                    model.combiner.descriptions.copy_(torch.nn.functional.normalize(torch.randn_like(model.combiner.descriptions), dim=-1))
                    model.combiner.described.fill_(True)
            used = routed_adapters(model, ids, mask, task_ids, 1) if table["type"] == "retrieval" else n
            cases[f"N={n} {label}"] = Case(learned(model, ids, mask, task_ids), n, used, adapter_bytes(model))
    return cases


def print_inference(cases: dict[str, Case], times: dict[str, list[float]], memory: dict[str, int] | None) -> None:
    bare, one = times[BARE], times[ONE]
    print(f"\n{'N':>4} {'configuration':<32} {'used':>4} {'ms':>7} {'x bare':>7} {'(p25-p75)':>13} {'x 1 LoRA':>8} {'peak MB':>8} {'adapter MB':>10}")
    for name, case in cases.items():
        x_bare, low, high = ratios(times[name], bare)
        x_one = ratios(times[name], one)[0]
        label = name.split(" ", 1)[1] if case.size is not None else name
        size = "" if case.size is None else str(case.size)
        peak = "" if memory is None else f"{memory[name] / 2**20:8.0f}"
        used = "" if case.used is None else str(case.used)
        print(
            f"{size:>4} {label:<32} {used:>4} {1000 * statistics.median(times[name]):7.0f} {x_bare:7.3f} "
            f"{f'({low:.3f}-{high:.3f})':>13} {x_one:8.3f} {peak:>8} {case.adapter_bytes / 2**20:10.1f}"
        )
    noise = statistics.median(abs(a - b) / b for a, b in zip(bare[1:], bare[:-1], strict=True)) if len(bare) > 1 else 0.0
    print(f"noise: the bare backbone's time changes by a median {100 * noise:.1f}% between consecutive repeats")
    print("used: distinct adapters the batch uses; peak MB: growth of the resident set in one forward pass; adapter MB: adapter and combiner weights")


def training_cases(bench: Bench, batch: int, length: int, n: int = 5) -> dict[str, Callable[[], object]]:
    torch.manual_seed(0)
    ids = torch.randint(1000, bench.bare.model.config.vocab_size, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.long)
    tasks = oracle_tasks(n, batch)
    task_ids = torch.arange(batch) % len(tasks)

    def step(model: MultiTaskModel, routing: str, task_ids: torch.Tensor) -> Callable[[], object]:
        return training_step(model, ids, mask, task_ids, routing)

    one = bench.model(library(1), {"type": "oracle"}, {"task0": "task0"})
    peft = bench.peft(1).train()
    peft_optimizer = torch.optim.AdamW([p for p in peft.parameters() if p.requires_grad], lr=1e-4)

    def peft_step() -> object:
        loss = peft(input_ids=ids, attention_mask=mask).last_hidden_state.pow(2).mean()
        peft_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        peft_optimizer.step()
        return None

    router = bench.model(library(n), {"type": "router", "top_k": 2}, tasks)
    spread_router(router, ids, mask, task_ids)
    return {
        "mtkit 1 LoRA (unmerged)": step(one, "oracle", torch.zeros(batch, dtype=torch.long)),
        "peft 1 LoRA (unmerged)": peft_step,
        f"N={n} oracle mixed batch": step(bench.model(library(n), {"type": "oracle"}, tasks), "oracle", task_ids),
        f"N={n} router top-2": step(router, "learned", task_ids),
        f"N={n} fusion_attention": step(bench.model(library(n), {"type": "fusion_attention"}, tasks), "learned", task_ids),
    }


def print_training(times: dict[str, list[float]], memory: dict[str, int] | None) -> None:
    one = times["mtkit 1 LoRA (unmerged)"]
    print(f"\n{'training step (adapters and combiner train)':<44} {'ms':>7} {'x 1 LoRA':>8} {'(p25-p75)':>13} {'peak MB':>8}")
    for name, values in times.items():
        median, low, high = ratios(values, one)
        peak = "" if memory is None else f"{memory[name] / 2**20:8.0f}"
        print(f"{name:<44} {1000 * statistics.median(values):7.0f} {median:8.3f} {f'({low:.3f}-{high:.3f})':>13} {peak:>8}")


def site_cases(factors: LowRank, x: torch.Tensor, weights: torch.Tensor, k: int, train: bool) -> dict[str, Callable[[], object]]:
    """Sparse weights applied at one site by the dense inner-space mix and by gathering (forward, or forward + backward)."""

    def call(fn: Callable[[], torch.Tensor]) -> Callable[[], object]:
        def run() -> object:
            with torch.set_grad_enabled(train):
                out = fn()
                if train:
                    out.sum().backward()
            return None

        return run

    return {
        "dense": call(lambda: lowrank.mix(factors, x, x, weights, training=False)),
        "gathered": call(lambda: lowrank.gathered_mix(factors, x, x, weights, k)),
    }


def switch_table(
    batch: int, length: int, repeats: int, *, width: int = 384, rank: int = 8, sizes: tuple[int, ...] = (2, 3, 4, 6, 8, 16, 32, 64)
) -> None:
    """Dense inner-space mix against per-sample gathering at one width -> width site, rank-8 LoRAs, for sparse
    weights over `used` adapters with `k` per sample: the measurements behind `mtkit.api.combiner.gathers`."""
    torch.manual_seed(0)
    gc.collect()  # once: these calls take milliseconds and allocate few Python objects
    x = torch.randn(batch, length, width)
    print(f"\nsparse weights at one site (rank-{rank} LoRAs, {width} -> {width}, batch {batch} x {length}): ms per call, inference | training (forward + backward)")
    print(f"{'used':>4} {'k':>2} {'dense':>8} {'gathered':>9} {'faster':>7} | {'dense':>8} {'gathered':>9} {'faster':>7} | {'gathers()':>9}")
    for used in sizes:
        for k in (1, 2, 4):
            if k > used:
                continue
            down = [torch.randn(rank, width, requires_grad=True) for _ in range(used)]
            up = [torch.randn(rank, width, requires_grad=True) for _ in range(used)]
            factors = LowRank(reads="input", down=down, up=up)
            index = torch.stack([torch.randperm(used)[:k] for _ in range(batch)])
            weights = torch.zeros(batch, used).scatter(-1, index, 1.0 / k)
            row: list[Any] = []
            for train in (False, True):
                times = interleaved(site_cases(factors, x, weights, k, train), repeats, 1, progress=False, collect=False)
                dense, gathered = (1000 * statistics.median(times[c]) for c in ("dense", "gathered"))
                row += [dense, gathered, "gather" if gathered < dense else "dense"]
            choice = "gather" if gathers(used, k) else "dense"
            print(f"{used:>4} {k:>2} {row[0]:8.2f} {row[1]:9.2f} {row[2]:>7} | {row[3]:8.2f} {row[4]:9.2f} {row[5]:>7} | {choice:>9}")


def measure_memory(args: argparse.Namespace, out: Path) -> None:
    """Peak resident-set growth of one forward pass per inference configuration, and of one training step per
    training configuration (run in its own process: see `track_freed_memory`)."""
    track_freed_memory()
    torch.set_num_threads(args.threads)
    bench = Bench()
    result: dict[str, dict[str, int]] = {"inference": {}, "training": {}}
    with torch.inference_mode():
        for name, case in inference_cases(bench, args.size_list, args.batch, args.length).items():
            case.run()  # warm-up: lazily built state and first-call allocations
            result["inference"][name] = peak_bytes(case.run)
    for name, step in training_cases(bench, args.batch, args.length).items():
        step()
        result["training"][name] = peak_bytes(step)
    out.write_text(json.dumps(result))


def memory_in_subprocess(args: argparse.Namespace) -> dict[str, dict[str, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "memory.json"
        command = [sys.executable, "-m", "benchmarks.bench_library", "--section", "memory", "--memory-out", str(out)]
        command += ["--sizes", args.sizes, "--batch", str(args.batch), "--length", str(args.length), "--threads", str(args.threads)]
        subprocess.run(command, check=True)
        return json.loads(out.read_text())  # type: ignore[no-any-return]


def xlora_table(args: argparse.Namespace) -> None:
    """layer_gates against PEFT's X-LoRA on SmolLM2 (see benchmarks.xlora_case), each size in its own interleaved run."""
    from benchmarks.xlora_case import xlora_cases

    print(f"\nlayer_gates vs PEFT X-LoRA: SmolLM2-135M-Instruct, batch {args.xlora_batch} x {args.xlora_length} tokens, LoRA rank 8 on q_proj/v_proj")
    print(f"{'N':>4} {'configuration':<28} {'ms':>7} {'x bare':>7} {'(p25-p75)':>13} {'x 1 LoRA':>8} {'x X-LoRA':>8}")
    for n in (int(s) for s in args.xlora_sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            cases = xlora_cases(n, args.xlora_batch, args.xlora_length, Path(tmp))
            with torch.inference_mode():
                times = interleaved(cases, args.repeats, args.warmup)
        bare, one, xlora = (times[name] for name in ("bare backbone", "mtkit 1 LoRA (unmerged)", f"N={n} peft X-LoRA"))
        for name, t in times.items():
            x_bare, low, high = ratios(t, bare)
            print(
                f"{n:>4} {name:<28} {1000 * statistics.median(t):7.0f} {x_bare:7.3f} {f'({low:.3f}-{high:.3f})':>13} "
                f"{ratios(t, one)[0]:8.3f} {ratios(t, xlora)[0]:8.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,5,20,100", help="library sizes N, comma-separated")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 gives steadier ratios on a shared machine)")
    parser.add_argument(
        "--section", choices=["all", "inference", "reuse", "xlora", "training", "switch", "memory"], default="all", help="what to run (all: every section)"
    )
    parser.add_argument("--xlora-sizes", default="5,20", help="library sizes of the X-LoRA section (SmolLM2-135M-Instruct)")
    parser.add_argument("--xlora-batch", type=int, default=4)
    parser.add_argument("--xlora-length", type=int, default=64)
    parser.add_argument("--memory-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.size_list = [int(s) for s in args.sizes.split(",")]
    if args.section == "memory" and args.memory_out is not None:
        measure_memory(args, args.memory_out)
        return
    torch.set_num_threads(args.threads)
    print(
        f"{'' if args.section == 'xlora' else f'all-MiniLM-L6-v2, batch {args.batch} x {args.length} tokens, LoRA rank 8 on query/value, '}"
        f"{args.threads} thread(s), {args.repeats} interleaved repeats after {args.warmup} warm-up"
    )
    memory = memory_in_subprocess(args) if args.section in ("all", "memory") else None
    if args.section in ("all", "inference"):
        cases = inference_cases(Bench(), args.size_list, args.batch, args.length)
        with torch.inference_mode():
            times = interleaved({name: case.run for name, case in cases.items()}, args.repeats, args.warmup)
        print_inference(cases, times, None if memory is None else memory["inference"])
        del cases
    if args.section in ("all", "reuse"):
        cases = reuse_cases(Bench(), args.size_list, args.batch, args.length)
        with torch.inference_mode():
            times = interleaved({name: case.run for name, case in cases.items()}, args.repeats, args.warmup)
        print_inference(cases, times, None)
        del cases
    if args.section in ("all", "xlora"):
        xlora_table(args)
    if args.section in ("all", "training"):
        steps = training_cases(Bench(), args.batch, args.length)
        print_training(interleaved(steps, args.repeats, args.warmup), None if memory is None else memory["training"])
        del steps
    if args.section == "memory":
        for kind, peaks in memory.items():  # type: ignore[union-attr]
            for name, value in peaks.items():
                print(f"{kind:<10} {name:<40} peak {value / 2**20:6.0f} MB")
    if args.section in ("all", "switch"):
        switch_table(args.batch, args.length, max(args.repeats, 5))


if __name__ == "__main__":
    main()
