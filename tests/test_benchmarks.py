"""The benchmarks' entry points: `python -m benchmarks --help` answers without running anything; the sparse-switch table."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mtkit.api.combiner import gathers
from tests.conftest import ROOT


def test_benchmarks_help_prints_usage_and_runs_nothing() -> None:
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m benchmarks") and "library" in result.stdout
    assert "==" not in result.stdout  # no benchmark started
    listed = subprocess.run([sys.executable, "-m", "benchmarks", "--list"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert listed.returncode == 0 and "benchmarks.bench_library" in listed.stdout
    wrong = subprocess.run([sys.executable, "-m", "benchmarks", "librari"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert wrong.returncode == 2 and "unknown benchmark 'librari'" in wrong.stderr


def test_bench_library_switch_table_states_the_rule_it_measures(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.bench_library import switch_table

    switch_table(batch=2, length=3, repeats=1, width=16, rank=2, sizes=(2, 4, 8))
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line[:4].strip().isdigit()]
    assert [(int(r[0]), int(r[1])) for r in rows] == [(2, 1), (2, 2), (4, 1), (4, 2), (4, 4), (8, 1), (8, 2), (8, 4)]
    for row in rows:
        used, k = int(row[0]), int(row[1])
        assert row[-1] == ("gather" if gathers(used, k) else "dense")


def test_bench_generation_pairs_generate_the_same_tokens_as_peft() -> None:
    """The generation benchmark's mtkit and PEFT cases (here on the tiny random Llama) compute the same thing."""
    from benchmarks.bench_generation import cases
    from tests.conftest import TINY_LLAMA

    backbone = {**TINY_LLAMA, "config_overrides": {**TINY_LLAMA["config_overrides"], "initializer_range": 0.2}}
    runs, checks = cases(batch=5, new_tokens=4, rank=2, train_length=12, backbone=backbone)
    assert checks == ["mtkit, 1 lora: same tokens as PEFT", "mtkit, 5 loras mixed: same tokens as PEFT"]
    assert len(runs) == 6
    for run in runs.values():
        run()
