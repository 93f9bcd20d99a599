"""`mtkit serve` under load on localhost: dynamic batching against batch-size-1 serving, in one run.

    python -m benchmarks.bench_serve [--run-dir DIR] [--requests 2000] [--clients 16] [--max-seconds 300] [--threads 1]
    python -m benchmarks.bench_serve --model-only [--profile]    (the model alone, in this process: benchmarks/serve_model.py)

Each configuration gets its own `mtkit serve` process on 127.0.0.1 and the same requests: `--clients`
concurrent clients (one asyncio process, httpx) each send one held-out input per `POST /predict` (no task: every
task's head, routing and detected task), the next as soon as the last is answered, until `--requests` are
answered or `--max-seconds` pass. Both servers run the model with `--threads` torch threads. Prints requests,
errors (any answer but 200), throughput and p50/p99 latency, the mean batch size the server reported, the
throughput ratio to batch-size-1 serving, the CPU seconds the server and the clients used, and the machine's
load average before and after each configuration.

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
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"mtkit serve exited with {process.returncode}: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("mtkit serve did not answer /health within 300 s")


async def load(url: str, inputs: list[str], requests: int, clients: int, max_seconds: float) -> tuple[list[float], int, float, float]:
    """Latencies of the answered requests, the error count, the wall time and the clients' CPU seconds."""
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
        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return latencies, errors, time.perf_counter() - start, time.process_time() - cpu


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both servers (mtkit serve --threads)")
    parser.add_argument("--model-only", action="store_true", help="time the model alone in this process instead (benchmarks/serve_model.py): what bounds the batching gain")
    parser.add_argument("--profile", action="store_true", help="with --model-only: where a request's and a batch's time goes (torch.profiler)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run = args.run_dir or ensure_run(args.cache)
    inputs = held_out_inputs(run)
    if args.model_only:
        from benchmarks.serve_model import model_only

        model_only(run, inputs, args.clients, args.threads, profiled=args.profile)
        return 0
    print(
        f"serving {run} ({len(inputs)} held-out inputs) to {args.clients} clients, {args.requests} requests per configuration; "
        f"POST /predict, one input each; {args.threads} torch thread(s) per server"
    )
    rows, usage = {}, {}
    for name, options in CONFIGS.items():
        process, url = start_server(run, [*options, "--threads", str(args.threads)])
        before = os.getloadavg()[0]
        try:
            server_cpu = cpu_seconds(process.pid)
            latencies, errors, wall, client_cpu = asyncio.run(load(url, inputs, args.requests, args.clients, args.max_seconds))
            server_cpu = cpu_seconds(process.pid) - server_cpu
            batch = mean_batch_size(url)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
        rows[name] = (len(latencies), errors, len(latencies) / wall, q[49] * 1000, q[98] * 1000, batch)
        usage[name] = (wall, server_cpu, client_cpu, before, os.getloadavg()[0])
    base = rows["batch size 1"][2]
    print(f"\n{'configuration':<18}{'answered':>9}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'batch':>7}{'x req/s':>9}")
    for name, (answered, errors, rate, p50, p99, batch) in rows.items():
        print(f"{name:<18}{answered:>9}{errors:>8}{rate:>9.1f}{p50:>9.1f}{p99:>9.1f}{batch:>7.1f}{rate / base:>9.2f}")
    print(f"\n{'configuration':<18}{'wall s':>8}{'server cpu s':>14}{'client cpu s':>14}{'load before':>13}{'load after':>12}")
    for name, (wall, server_cpu, client_cpu, before, after) in usage.items():
        print(f"{name:<18}{wall:>8.1f}{server_cpu:>14.1f}{client_cpu:>14.1f}{before:>13.2f}{after:>12.2f}")
    return 0 if all(row[1] == 0 for row in rows.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
