"""A check on a CUDA GPU: the seed recipes in bf16, LoRA training on a 4-bit quantised backbone, and the combiner
benchmark, printed as one table. Without a CUDA device it says so and exits 0.

    python -m benchmarks.gpu_check [--only dynamo,taskweaver,qlora,combiners] [--output-dir DIR]

Needs `pip install 'mtkit[gpu]'` (bitsandbytes) for the 4-bit row. Each row runs the shipped recipe as `mtkit run`
would, with `run.device = "cuda"` and `run.mixed_precision = "bf16"`; it takes a few minutes on one modern GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
CUDA_BF16 = ["run.device=cuda", "run.mixed_precision=bf16"]
CHECKS: dict[str, tuple[str, list[str]]] = {
    "dynamo": ("dynamo.toml", CUDA_BF16),
    "taskweaver": ("taskweaver.toml", CUDA_BF16),
    # LoRA on SmolLM2 loaded in 4-bit NF4 (QLoRA-style): the headline recipe with a quantised backbone.
    "qlora": ("headlines.toml", [*CUDA_BF16, "backbone.quantization=4bit"]),
}


def _run(name: str, recipe: str, overrides: list[str], out: Path) -> dict[str, Any]:
    """One recipe through the real CLI; its wall time and final scores (first metric per task)."""
    target = out / name
    args = [sys.executable, "-m", "mtkit", "run", str(ROOT / "recipes" / recipe), "--overwrite"]
    for item in [*overrides, f'run.output_dir="{target}"']:
        args += ["--set", item]
    tic = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - tic
    if done.returncode != 0:
        return {"check": name, "status": "failed", "seconds": seconds, "detail": done.stderr.strip().splitlines()[-1:]}
    results = json.loads((target / "results.json").read_text(encoding="utf-8"))
    last = list(results)[-1]
    by_routing = results[last]
    scores = next(iter(by_routing.values()))
    detail = {task: round(next(iter(values.values())), 4) for task, values in scores.items()}
    return {"check": name, "status": "ok", "seconds": seconds, "detail": detail}


def _combiners() -> dict[str, Any]:
    tic = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_combiners", "--device", "cuda"], capture_output=True, text=True, check=False, cwd=ROOT)
    status = "ok" if done.returncode == 0 else "failed"
    return {"check": "combiners", "status": status, "seconds": time.perf_counter() - tic, "detail": done.stdout.strip() or done.stderr.strip()[-500:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join([*CHECKS, "combiners"]), help="Comma-separated checks to run.")
    parser.add_argument("--output-dir", type=Path, default=None, help="Where the runs go (default: a temporary folder).")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device (torch {torch.__version__}); skipped")
        return 0
    chosen = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = sorted(set(chosen) - {*CHECKS, "combiners"})
    if unknown:
        parser.error(f"unknown check(s) {', '.join(unknown)}; known: {', '.join([*CHECKS, 'combiners'])}")
    out = args.output_dir or Path(tempfile.mkdtemp(prefix="mtkit-gpu-check-"))
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}; runs in {out}")
    rows = [_run(name, *CHECKS[name], out) for name in chosen if name in CHECKS]
    if "combiners" in chosen:
        rows.append(_combiners())
    print(f"\n{'check':<12} {'status':<8} {'seconds':>8}  detail")
    for row in rows:
        detail = row["detail"] if isinstance(row["detail"], str) and "\n" in row["detail"] else json.dumps(row["detail"])
        print(f"{row['check']:<12} {row['status']:<8} {row['seconds']:>8.1f}  {detail}")
    return 0 if all(row["status"] == "ok" for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
