"""`python -m benchmarks`: every benchmark in turn (or the ones named), each printing its table of ratios.

    python -m benchmarks [--list] [NAME ...]

Each one also runs alone with its own options: `python -m benchmarks.bench_adapters --help`,
`python -m benchmarks.bench_combiners --help`, `python -m benchmarks.bench_library --help`,
`python -m benchmarks.bench_balancers --help`, `python -m benchmarks.bench_router_sources --help`,
`python -m benchmarks.bench_serve --help`, `python -m benchmarks.bench_generation --help`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

BENCHMARKS = {
    "adapters": "mtkit LoRA against PEFT's, merged LoRA against the bare backbone, hyper_lora against LoRA",
    "combiners": "every combiner over 5 LoRAs (and fusion over 3 bottleneck adapters) against the bare backbone",
    "library": "libraries of 1 to 100 LoRAs: oracle, routers, fusion and PEFT's mixed batch; training steps; memory",
    "balancers": "each balancer's training step on one shared LoRA against the static loss sum",
    "router_sources": "a DYNAMO training step with each router input source against the `embeddings` source",
    "serve": "`mtkit serve` under load on localhost: dynamic batching against batch-size-1 serving (trains a short run once)",
    "generation": "SmolLM2 generation (1 LoRA; 5 LoRAs in a mixed batch) and a LoRA training step against PEFT's",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run mtkit's benchmarks on the packaged MiniLM and SmolLM2, each in its own process, with its defaults.",
        epilog="benchmarks: " + "; ".join(f"{name}: {what}" for name, what in BENCHMARKS.items()),
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r} (known: {', '.join(sorted(BENCHMARKS))})")
    if args.list:
        for name, what in BENCHMARKS.items():
            print(f"{name:<15} python -m benchmarks.bench_{name}: {what}")
        return 0
    for name in args.names or list(BENCHMARKS):
        module = f"benchmarks.bench_{name}"
        print(f"\n== {module}", flush=True)
        code = subprocess.run([sys.executable, "-m", module], check=False).returncode
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
