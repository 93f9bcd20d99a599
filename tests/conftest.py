"""Shared fixtures: the real registry, tiny random backbones built from configs, recipe writers."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mtkit import Registry, load_registry
from mtkit.testing import TINY_BERT, TINY_LLAMA

ROOT = Path(__file__).resolve().parent.parent

@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_registry()


@pytest.fixture()
def tiny_recipe() -> dict[str, Any]:
    """A two-task recipe on a tiny random BERT and small real-data samples (trains in seconds)."""
    return tiny_recipe_table()


def tiny_recipe_table() -> dict[str, Any]:
    """The `tiny_recipe` fixture's table, for fixtures of wider scope."""
    return {
        "run": {"name": "tiny", "seed": 0, "batch_size": 8, "eval_batch_size": 16, "max_length": 32, "checkpoint_every": 3, "log_every": 2},
        "backbone": dict(TINY_BERT),
        "adapters": {
            "sentiment": {"type": "lora", "rank": 4, "target_modules": ["query", "value"]},
            "topic": {"type": "lora", "rank": 4, "target_modules": ["query", "value"]},
        },
        "combiner": {"type": "oracle"},
        "tasks": {
            "sentiment": {
                "dataset": {"type": "rotten_tomatoes", "max_train_examples": 64, "max_eval_examples": 24},
                "head": {"type": "classification"},
                "metrics": ["accuracy", "macro_f1"],
            },
            "topic": {
                "dataset": {"type": "bbc_news", "max_train_examples": 64, "max_eval_examples": 24},
                "head": {"type": "classification"},
                "metrics": ["accuracy"],
            },
        },
        "phases": [
            {"name": "adapters", "steps": 5, "train": ["adapters", "heads"], "lr": 5e-3},
            {"name": "heads", "steps": 4, "train": ["heads"], "lr": 1e-3, "batching": "mixed"},
        ],
    }


def count_calls(monkeypatch: pytest.MonkeyPatch, target: str) -> list[int]:
    """Wrap the function at dotted path `target` (e.g. "mtkit.api.lowrank.gather") to count its calls; -> [count]."""
    module, name = target.rsplit(".", 1)
    real = getattr(__import__(module, fromlist=[name]), name)
    calls = [0]

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(target, counted)
    return calls


def write_toml(path: Path, data: dict[str, Any]) -> Path:
    """A minimal TOML writer for the nested dicts tests build (tables, arrays of tables, scalars)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return repr(v)

    lines: list[str] = []

    def table(prefix: str, node: dict[str, Any]) -> None:
        scalars = {k: v for k, v in node.items() if not isinstance(v, dict) and not (isinstance(v, list) and v and isinstance(v[0], dict))}
        if prefix:
            lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {value(v)}" for k, v in scalars.items())
        for k, v in node.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}" if prefix else k, v)
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                for item in v:
                    lines.append(f"[[{prefix + '.' if prefix else ''}{k}]]")
                    lines.extend(f"{ik} = {value(iv)}" for ik, iv in item.items())

    table("", data)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def kill_and_resume(recipe_path: Path, run_dir: Path, timeout: float = 600) -> None:
    """`mtkit run RECIPE`, killed by a real SIGKILL as soon as its first checkpoint exists, then `mtkit run --resume`
    to the end (asserts it was killed mid-run and that the resumed run succeeds)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def start(*extra: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "mtkit", "run", str(recipe_path), *extra]
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    victim = start()
    latest = run_dir / "checkpoints" / "latest"
    deadline = time.time() + timeout
    while not latest.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (run_dir / "results.json").exists()
    resumed = start("--resume")
    _, stderr = resumed.communicate(timeout=timeout)
    assert resumed.returncode == 0, stderr.decode()
