"""`python -m benchmarks`: every benchmark in turn, each printing its table of ratios.

Each one also runs alone: `python -m benchmarks.bench_adapters --help`, `python -m benchmarks.bench_combiners --help`, `python -m benchmarks.bench_balancers --help`.
"""

from __future__ import annotations

import subprocess
import sys

for module in ("benchmarks.bench_adapters", "benchmarks.bench_combiners", "benchmarks.bench_balancers"):
    print(f"\n== {module}", flush=True)
    subprocess.run([sys.executable, "-m", module], check=True)
