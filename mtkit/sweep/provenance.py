"""What produced a comparison: mtkit's version, the git commit of its source (and whether the tree was dirty), the
versions of the packages results depend on, and the hardware. Written to provenance.json beside the comparison."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["FILE", "PACKAGES", "collect_provenance", "provenance_lines"]

FILE = "provenance.json"

PACKAGES = (
    "torch", "transformers", "peft", "accelerate", "datasets", "tokenizers", "safetensors", "numpy", "scipy",
    "pydantic", "cma", "sacrebleu", "rouge-score", "matplotlib", "ray",
)
"""Distributions whose versions the record lists (those installed)."""


def _git(args: list[str], where: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _source() -> dict[str, Any]:
    """The git commit of the checkout mtkit runs from, and whether its tree differs from it; None outside a checkout."""
    import mtkit

    where = Path(mtkit.__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], where)
    if commit is None:
        return {"commit": None, "dirty": None, "checkout": None}
    status = _git(["status", "--porcelain", "--untracked-files=no"], where)
    return {"commit": commit, "dirty": bool(status) if status is not None else None, "checkout": _git(["rev-parse", "--show-toplevel"], where)}


def _versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _hardware() -> dict[str, Any]:
    record: dict[str, Any] = {
        "machine": platform.machine(),
        "system": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        record["memory_gib"] = round(pages * size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    import torch

    record["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        record["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        record["cuda"] = torch.version.cuda
    else:
        record["gpus"] = []
    return record


def collect_provenance(command: list[str] | None = None) -> dict[str, Any]:
    """The record: mtkit's version and source, the command line, Python and package versions, and the hardware."""
    try:
        version = metadata.version("mtkit")
    except metadata.PackageNotFoundError:
        version = None
    return {
        "mtkit": version,
        "source": _source(),
        "command": command if command is not None else list(sys.argv),
        "python": platform.python_version(),
        "packages": _versions(),
        "hardware": _hardware(),
    }


def provenance_lines(record: dict[str, Any]) -> list[str]:
    """The record as markdown bullet lines for comparison.md."""
    source, hardware = record.get("source") or {}, record.get("hardware") or {}
    commit = source.get("commit")
    where = f"{commit[:12]}{' (dirty tree)' if source.get('dirty') else ''}" if commit else "not a git checkout"
    gpus = ", ".join(hardware.get("gpus") or []) or "none"
    packages = ", ".join(f"{k} {v}" for k, v in (record.get("packages") or {}).items())
    return [
        f"- mtkit {record.get('mtkit')}, commit {where}; Python {record.get('python')}",
        f"- hardware: {hardware.get('cpu')} ({hardware.get('cpu_count')} CPUs, {hardware.get('torch_threads')} torch threads, "
        f"{hardware.get('memory_gib', '?')} GiB), GPUs: {gpus}; load average at the end {hardware.get('load_average')}",
        f"- packages: {packages}",
    ]
