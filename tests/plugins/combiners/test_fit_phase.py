"""A phase with `fit_combiner = true` runs the combiner's own routine on the recipe's data; what it learns is saved
with the run's weights and reloads; a combiner without a routine skips it (ablations keep their phases)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from mtkit.rundir.load import load_run
from mtkit.train.run import run_recipe
from tests.conftest import write_toml

COMBINERS = {
    "retrieval": ({"type": "retrieval", "examples": 6}, "combiner.descriptions"),
    "phatgoose": ({"type": "phatgoose", "gate_steps": 3, "examples": 8}, "combiner.gates.model__encoder__layer__0__attention__self__query"),
}


def _recipe(tiny_recipe: dict[str, Any], tmp_path: Path, combiner: dict[str, Any]) -> Path:
    recipe = copy.deepcopy(tiny_recipe)
    recipe["run"]["output_dir"] = str(tmp_path / "run")
    for task in recipe["tasks"].values():
        task["dataset"] |= {"max_train_examples": 16, "max_eval_examples": 8}
    recipe["combiner"] = combiner
    recipe["phases"] = [
        {"name": "library", "steps": 2, "train": ["adapters", "heads"], "lr": 5e-3},
        {"name": "fit", "steps": 0, "routing": "learned", "fit_combiner": True},
    ]
    return write_toml(tmp_path / "fit.toml", recipe)


@pytest.mark.parametrize("name", list(COMBINERS))
def test_fit_phase_saves_what_the_routine_learned(name: str, tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    table, key = COMBINERS[name]
    run_recipe(_recipe(tiny_recipe, tmp_path, table))
    run = tmp_path / "run"
    summary = json.loads((run / "combiner_fit.json").read_text())["fit"]
    assert summary["combiner"] == name
    saved = load_file(run / "model.safetensors")
    reloaded = load_run(run).model.state_dict()
    assert key in saved and torch.equal(reloaded[key], saved[key])
    if name == "retrieval":
        assert summary["examples"] == {"sentiment": 6, "topic": 6}
        assert saved["combiner.described"].tolist() == [True, True]
    else:
        assert set(summary["gate_loss"]) == {"sentiment", "topic"}
        assert json.loads((run / "parameters.json").read_text())["trained"] > 0
    assert f"## Combiner routine in phase `fit` (`{name}`)" in (run / "report.md").read_text()


def test_fit_phase_is_skipped_for_a_combiner_without_a_routine(tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    run_recipe(_recipe(tiny_recipe, tmp_path, {"type": "uniform"}))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    skipped = [r for r in records if r.get("event") == "combiner_fit"]
    assert [r["skipped"] for r in skipped] == ["combiner 'uniform' has no training routine"]
    assert not (tmp_path / "run" / "combiner_fit.json").exists()


def test_fit_phase_describes_adapters_from_example_files(tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    """Through the trainer: an adapter with an example file is described by its lines, the other by its task's data;
    the run reloads once the file is gone."""
    examples = tmp_path / "topic.txt"
    examples.write_text("shares fell on monday\n\nthe bank raised its rates\nprofits rose\n", encoding="utf-8")
    run_recipe(_recipe(tiny_recipe, tmp_path, {"type": "retrieval", "examples": 6, "example_files": {"topic": str(examples)}}))
    summary = json.loads((tmp_path / "run" / "combiner_fit.json").read_text())["fit"]
    assert summary["examples"] == {"sentiment": 6, "topic": 3}
    assert summary["example_files"] == {"topic": str(examples)}
    saved = load_file(tmp_path / "run" / "model.safetensors")["combiner.descriptions"]
    examples.unlink()  # the descriptions live in the weights: the finished run reloads without the file
    assert torch.equal(load_run(tmp_path / "run").model.state_dict()["combiner.descriptions"], saved)
