"""The library benchmark's protocol end to end: recipes/library_tiny.toml's header command through `mtkit ablate`, as a
real subprocess, and what its comparison must hold (held-out scores per variant, paired intervals against the
multi-task LoRA, the cost plot, provenance, the few-shot draw recorded and disjoint from the test split, the held-out
task's adapter untouched by the library phase)."""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

TINY = ROOT / "recipes" / "library_tiny.toml"


def header_command(path: Path) -> list[str]:
    """The `mtkit ablate` command a recipe's header gives (its continuation lines joined), as arguments."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#   mtkit ablate"))
    parts = [lines[start][4:]]
    parts += [line[4:].strip() for line in lines[start + 1 :] if line.startswith("#     ")]
    return shlex.split(" ".join(parts))


def test_library_recipe_header_command_is_one_ablation() -> None:
    args = header_command(TINY)
    assert args[:3] == ["mtkit", "ablate", "recipes/library_tiny.toml"]
    assert "--reference" in args and args[args.index("--reference") + 1] == "multitask"


@pytest.mark.slow
def test_library_tiny_ablation_runs_end_to_end(tmp_path: Path) -> None:
    args = header_command(TINY)
    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "mtkit", *args[1:], "--output-dir", str(out), "--threads", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    with (out / "comparison.csv").open(encoding="utf-8") as f:
        rows = {row["variant"]: row for row in csv.DictReader(f)}
    variants = {"multitask", "base", "own", "uniform", "arrow", "retrieval", "lorahub", "cat", "layer_gates", "router",
                "linear", "ties", "phatgoose"}
    assert set(rows) == variants
    for name, row in rows.items():
        assert row["status"] == "ok", (name, row["errors"])
        assert row["fr_es/chrf"] != "" and row["fr_es/chrf_se"] != ""  # two seeds: a mean and its standard error
        assert "sentiment/exact_match" not in row  # the composition phase scores the held-out task only
        if name != "multitask":
            assert row["fr_es/chrf_ci_low"] != ""  # paired against the multi-task LoRA
        assert row["inference_time"] != ""
    assert (out / "comparison_cost.png").stat().st_size > 0
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["packages"]["torch"] and provenance["hardware"]["cpu_count"]
    assert "commit" in provenance["source"] and "dirty" in provenance["source"]
    assert "Produced by" in (out / "comparison.md").read_text()

    # The few-shot draw of a few-shot method: k rows of its training split, drawn with the run's seed, recorded.
    run = out / "lorahub" / "seed-1"
    data = json.loads((run / "data.json").read_text())
    drawn = data["few_shot"]["compose"]["fr_es"]
    assert drawn["examples"] == 4 and drawn["seed"] == 1 and len(drawn["rows"]) == 4
