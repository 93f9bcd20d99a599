"""Held-out tasks (`tasks.X.held_out`) and few-shot composition phases (`phases.N.few_shot`): validation, the few-shot
draw, and that a held-out task is never trained by the library phase."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from mtkit.api.errors import RecipeError
from mtkit.cli import app
from mtkit.data.few_shot import draw_few_shot, few_shot_rows
from mtkit.data.tasks import ROW_COLUMN
from mtkit.model.build import build_model, encode_tasks, load_sources
from mtkit.recipe.resolve import resolve
from mtkit.train.run import run_recipe
from tests.conftest import ROOT

TINY = ROOT / "recipes" / "library_tiny.toml"


def _tiny() -> dict[str, Any]:
    return tomllib.loads(TINY.read_text(encoding="utf-8"))


def _problems(raw: dict[str, Any], registry: Any) -> str:
    with pytest.raises(RecipeError) as caught:
        resolve(raw, registry, "library.toml")
    return "\n".join(caught.value.problems)


def test_held_out_recipe_scores_and_draws_by_phase(registry: Any) -> None:
    recipe = resolve(_tiny(), registry, "library.toml").recipe
    library, compose = recipe.phases
    assert recipe.held_out_tasks() == ["fr_es"]
    assert recipe.phase_tasks(library) == recipe.scored_tasks(library) == ["fr_en", "en_es", "sentiment"]
    assert recipe.phase_tasks(compose) == recipe.scored_tasks(compose) == ["fr_es"]


def test_held_out_few_shot_without_held_out_task_is_refused(registry: Any) -> None:
    raw = _tiny()
    raw["tasks"]["fr_es"]["held_out"] = False
    assert "library.toml: phases.1.few_shot: the recipe holds no task out" in _problems(raw, registry)


def test_held_out_few_shot_phase_refuses_validation_checks(registry: Any) -> None:
    raw = _tiny()
    raw["phases"][1]["eval_every"] = 2
    assert "phases.1: eval_every scores validation splits, which in a few_shot phase are the held-out tasks'" in _problems(raw, registry)


def test_held_out_library_phase_with_nothing_to_draw_is_refused(registry: Any) -> None:
    raw = _tiny()
    for task in raw["tasks"].values():
        task["held_out"] = True
    assert "phases.0: the phase trains but draws from no task (every task it could draw is held out)" in _problems(raw, registry)


def test_held_out_few_shot_needs_positive_k(registry: Any) -> None:
    raw = _tiny()
    raw["phases"][1]["few_shot"] = {"examples": 0}
    assert "phases.1.few_shot.examples: input should be greater than 0" in _problems(raw, registry)


def test_held_out_bad_key_exits_2_naming_the_path(tmp_path: Path) -> None:
    text = TINY.read_text(encoding="utf-8").replace("few_shot = { examples = 4 }", "few_shot = { examples = 4, sed = 1 }")
    path = tmp_path / "library.toml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "phases.1.few_shot.sed: unknown key; did you mean 'seed'?" in result.output
    assert "Traceback" not in result.output


def test_few_shot_rows_are_seeded_and_distinct() -> None:
    first = few_shot_rows(100, 8, seed=3, task="fr_es")
    assert first == few_shot_rows(100, 8, seed=3, task="fr_es")  # the same draw every time
    assert len(set(first)) == 8 and all(0 <= r < 100 for r in first)
    assert first != few_shot_rows(100, 8, seed=4, task="fr_es")  # another seed, another draw
    assert first != few_shot_rows(100, 8, seed=3, task="it_pt")  # tasks drawn with one seed: independent draws
    assert few_shot_rows(5, 8, seed=3, task="fr_es") == [0, 1, 2, 3, 4]  # k above the split's size: all of it


def test_few_shot_draw_comes_from_the_training_split_only(registry: Any) -> None:
    resolved = resolve(_tiny(), registry, "library.toml")
    sources, loaded, infos = load_sources(resolved)
    tasks = encode_tasks(resolved, build_model(resolved, infos), sources, loaded, only=["fr_es"])
    drawn, record = draw_few_shot(tasks, ["fr_es"], 4, seed=7)
    again, _ = draw_few_shot(tasks, ["fr_es"], 4, seed=7)
    rows = record["fr_es"]["rows"]
    assert len(rows) == 4 == len(drawn["fr_es"].train)
    assert drawn["fr_es"].train[ROW_COLUMN] == rows == again["fr_es"].train[ROW_COLUMN]
    assert set(rows) <= set(tasks["fr_es"].train[ROW_COLUMN])
    assert not set(rows) & set(tasks["fr_es"].eval[ROW_COLUMN])  # never a test example
    assert drawn["fr_es"].eval[ROW_COLUMN] == tasks["fr_es"].eval[ROW_COLUMN]  # scored on the whole test split


def test_held_out_adapter_is_never_trained_by_the_library_phase(registry: Any, tmp_path: Path) -> None:
    """A held-out task with an adapter of its own: the library phase (oracle routing, `train = ["adapters"]`) changes
    every library adapter and leaves the held-out task's exactly as it was built."""
    raw = _tiny()
    lora = {"type": "lora", "rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"], "init": "random"}
    raw["adapters"] = {name: copy.deepcopy(lora) for name in ("fr_en", "en_es", "sentiment", "fr_es")}
    raw["phases"] = raw["phases"][:1]
    raw["phases"][0]["steps"] = 12  # every library task drawn (seeded plan)
    raw["run"] |= {"output_dir": str(tmp_path / "run"), "inference_cost": False, "bootstrap_resamples": 0}
    path = tmp_path / "library.json"  # a recipe may be JSON; the prompts' newlines need no TOML escaping
    path.write_text(json.dumps(raw), encoding="utf-8")
    run_recipe(path)
    trained = load_file(str(tmp_path / "run" / "model.safetensors"))
    resolved = resolve(raw, registry, str(path))
    _, _, infos = load_sources(resolved)
    start = build_model(resolved, infos).state_dict()
    for adapter in ("fr_en", "en_es", "sentiment", "fr_es"):
        keys = [k for k in trained if k.startswith(f"adapters.{adapter}.")]
        assert keys
        same = all(torch.equal(trained[k], start[k]) for k in keys)
        assert same == (adapter == "fr_es"), adapter
    data = json.loads((tmp_path / "run" / "data.json").read_text())
    assert "few_shot" not in data
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["library"]["oracle"]) == {"fr_en", "en_es", "sentiment"}  # the held-out task is not scored there
