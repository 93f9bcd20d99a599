"""`mtkit serve` under load on localhost: dynamic batching against batch-size-1 serving, in one run.

    python -m benchmarks.bench_serve [--run-dir DIR] [--requests 2000] [--clients 16] [--max-seconds 300]

Each configuration gets its own `mtkit serve` process on 127.0.0.1 and the same requests: `--clients`
concurrent clients (one asyncio process, httpx) each send one held-out input per `POST /predict` (no task: every
task's head, routing and detected task), the next as soon as the last is answered, until `--requests` are
answered or `--max-seconds` pass. Prints requests, errors (any answer but 200), throughput and p50/p99 latency,
the mean batch size the server reported, and the throughput ratio to batch-size-1 serving.

Without `--run-dir` it trains a short DYNAMO run (recipes/dynamo.toml, phases cut to 40/30/10 steps) into
`--cache` once and reuses it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHORT_DYNAMO = [
    "phases.0.steps=40", "phases.1.steps=30", "phases.2.steps=10",
    "tasks.sentiment.dataset.max_eval_examples=100", "tasks.topic.dataset.max_eval_examples=100", "tasks.subject.dataset.max_eval_examples=100",
]
CONFIGS = {"batch size 1": ["--max-batch-size", "1"], "dynamic batching": ["--max-batch-size", "32", "--max-wait-ms", "10"]}


def ensure_run(cache: Path) -> Path:
    """The short DYNAMO run directory, trained on first use."""
    run = cache / "dynamo_short"
    if (run / "manifest.json").exists():
        return run
    command = [sys.executable, "-m", "mtkit", "run", str(ROOT / "recipes" / "dynamo.toml"), "--set", f"run.output_dir={run}"]
    for override in SHORT_DYNAMO:
        command += ["--set", override]
    print(f"training the benchmark's run: {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return run


def held_out_inputs(run: Path) -> list[str]:
    """The run's held-out inputs of every task, interleaved (task by task in turn)."""
    last = json.loads((run / "recipe.json").read_text())["phases"][-1]["name"]
    per_task = []
    for path in sorted((run / "predictions" / last).glob("*.jsonl")):
        if path.stem.count(".") == 0:  # not a probe
            per_task.append([next(iter(json.loads(line)["input"].values())) for line in path.read_text().splitlines()])
    return [texts[i] for i in range(max(map(len, per_task))) for texts in per_task if i < len(texts)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(run: Path, options: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "mtkit", "serve", str(run), "--port", str(port), "--queue-size", "1024", *options], stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"mtkit serve exited with {process.returncode}: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("mtkit serve did not answer /health within 120 s")


async def load(url: str, inputs: list[str], requests: int, clients: int, max_seconds: float) -> tuple[list[float], int, float]:
    """Latencies of the answered requests, the error count and the wall time."""
    import httpx

    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    deadline = time.monotonic() + max_seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            if time.monotonic() > deadline:
                return
            start = time.perf_counter()
            try:
                response = await http.post(f"{url}/predict", json={"inputs": inputs[i % len(inputs)]})
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        for text in inputs[:clients]:  # warm-up, not timed
            await http.post(f"{url}/predict", json={"inputs": text})
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return latencies, errors, time.perf_counter() - start


def mean_batch_size(url: str) -> float:
    import httpx

    text = httpx.get(f"{url}/metrics").text
    count = float(re.search(r"^mtkit_batch_size_count (\S+)", text, re.MULTILINE).group(1))  # type: ignore[union-attr]
    total = float(re.search(r"^mtkit_batch_size_sum (\S+)", text, re.MULTILINE).group(1))  # type: ignore[union-attr]
    return total / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, help="a finished run to serve (default: a short DYNAMO run, trained once into --cache)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "mtkit" / "bench_serve", help="where the default run is trained")
    parser.add_argument("--requests", type=int, default=2000, help="requests per configuration")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--max-seconds", type=float, default=300, help="stop sending after this long per configuration")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run = args.run_dir or ensure_run(args.cache)
    inputs = held_out_inputs(run)
    print(f"serving {run} ({len(inputs)} held-out inputs) to {args.clients} clients, {args.requests} requests per configuration; POST /predict, one input each")
    rows = {}
    for name, options in CONFIGS.items():
        process, url = start_server(run, options)
        try:
            latencies, errors, wall = asyncio.run(load(url, inputs, args.requests, args.clients, args.max_seconds))
            batch = mean_batch_size(url)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
        rows[name] = (len(latencies), errors, len(latencies) / wall, q[49] * 1000, q[98] * 1000, batch)
    base = rows["batch size 1"][2]
    print(f"\n{'configuration':<18}{'answered':>9}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'batch':>7}{'x req/s':>9}")
    for name, (answered, errors, rate, p50, p99, batch) in rows.items():
        print(f"{name:<18}{answered:>9}{errors:>8}{rate:>9.1f}{p50:>9.1f}{p99:>9.1f}{batch:>7.1f}{rate / base:>9.2f}")
    return 0 if all(row[1] == 0 for row in rows.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
