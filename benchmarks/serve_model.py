"""What bounds `mtkit serve`'s batching gain: the model alone, in this process, with no HTTP.

`python -m benchmarks.bench_serve --model-only` prints, for the served run's held-out inputs (every task's head,
no task named, as the load test asks): milliseconds per input answered one at a time and in batches of
`--clients`, with heads sharing backbone passes and with one pass per head; then the rate of MiniLM's linear
layers (384 -> 384, 384 -> 1536, 1536 -> 384) at one request's rows and at a batch's rows, which is where most of a
forward pass's time goes. With `--profile`, also where the time goes (torch.profiler): the costliest operators, the
rest of the torch operators, and the time outside them (tokenising, Python, post-processing), per input.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

SHAPES = ((384, 384), (384, 1536), (1536, 384))


def per_input_ms(service: object, texts: list[str], batch: int, share: bool) -> float:
    from mtkit.rundir.load import predict_loaded

    loaded = service.loaded  # type: ignore[attr-defined]
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        chunk = texts[i : i + batch]
        for rows in service._length_groups(chunk):  # type: ignore[attr-defined]  # as Service.run_batch groups a batch
            predict_loaded(loaded, [chunk[r] for r in rows], [None] * len(rows), share_passes=share)
    return (time.perf_counter() - start) / len(texts) * 1000


def linear_gflops(rows: int, d_in: int, d_out: int, flops: float = 2e9, rounds: int = 5) -> float:
    """The best of `rounds` timings of about `flops` each (the least disturbed by other work on the machine)."""
    layer = torch.nn.Linear(d_in, d_out)
    x = torch.randn(rows, d_in)
    repeats = max(3, round(flops / (2 * rows * d_in * d_out)))
    best = float("inf")
    with torch.no_grad():
        layer(x)
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(repeats):
                layer(x)
            best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * rows * d_in * d_out / best / 1e9


def profile_table(service: object, texts: list[str], clients: int, top: int = 5) -> None:
    """ms per input by operator, one at a time and in batches of `clients` (shared passes)."""
    from torch.profiler import ProfilerActivity, profile

    print("\nwhere the time goes, ms per input (shared passes; torch.profiler, so a little slower than above)")
    for batch, label in ((1, "one at a time"), (clients, f"batches of {clients}")):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            wall = per_input_ms(service, texts, batch, True)
        events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        per_input = [(e.key, e.self_cpu_time_total / 1000 / len(texts)) for e in events]
        ops = sum(ms for _, ms in per_input)
        parts = ", ".join(f"{key.removeprefix('aten::')} {ms:.1f}" for key, ms in per_input[:top])
        print(f"  {label}: {wall:.1f} in all: {parts}, other operators {ops - sum(ms for _, ms in per_input[:top]):.1f}, outside torch operators {wall - ops:.1f}")


def model_only(run: Path, inputs: list[str], clients: int, threads: int, count: int = 48, profiled: bool = False) -> None:
    from mtkit.serve.service import Service

    torch.set_num_threads(threads)
    service = Service.open(run)
    texts = inputs[:count]
    per_input_ms(service, texts[:4], 4, True)  # warm-up
    print(f"the model alone, {count} held-out inputs (every task's head), {threads} torch thread(s); ms per input")
    print(f"{'passes':<22}{'one at a time':>15}{f'batches of {clients}':>15}{'x':>7}")
    for share, label in ((True, "shared by the heads"), (False, "one per head")):
        one, batched = per_input_ms(service, texts, 1, share), per_input_ms(service, texts, clients, share)
        print(f"{label:<22}{one:>15.1f}{batched:>15.1f}{one / batched:>7.2f}")
    tokens = service.tokenizer(texts[: min(count, clients)], truncation=True, max_length=service.longest)["input_ids"]
    request, batch = max(1, round(sum(map(len, tokens)) / len(tokens))), sum(map(len, tokens))
    print(f"\nlinear layers, GFLOP/s (best of 5) at one request's rows ({request}) and at a batch's ({batch})")
    for d_in, d_out in SHAPES:
        small, large = linear_gflops(request, d_in, d_out), linear_gflops(batch, d_in, d_out)
        print(f"{d_in:>5} -> {d_out:<6}{small:>10.1f}{large:>10.1f}{large / small:>7.2f}")
    if profiled:
        profile_table(service, texts, clients)
