"""Every shipped recipe validates (both passes, without building models)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mtkit import Registry
from mtkit.recipe.resolve import load_recipe
from tests.conftest import ROOT

RECIPES = sorted((ROOT / "recipes").glob("*.toml"))
# Recipes another slow test already runs whole (or through their header's command), by the test file that does: the
# few-step run below would repeat a subset of it, so it leaves them out.
RUN_ELSEWHERE = {
    "dynamo": "tests/e2e/test_dynamo.py",
    "quickstart": "tests/e2e/test_quickstart.py",
    "router_quickstart": "tests/plugins/combiners/test_router_quickstart.py",
    "headlines": "tests/plugins/heads/test_lm_e2e.py",
    "translation": "tests/plugins/heads/test_lm_e2e.py",
    "library_tiny": "tests/test_library_recipe.py",
    "moe_lora": "tests/test_moe_lora_recipe.py",
}
FEW_STEPS = [p for p in RECIPES if p.stem not in RUN_ELSEWHERE]


def test_recipes_exist() -> None:
    assert any(p.name == "quickstart.toml" for p in RECIPES)


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_validates(path: Path, registry: Registry) -> None:
    resolved = load_recipe(path, registry=registry)
    assert resolved.recipe.phases and resolved.recipe.tasks and "backbone" in resolved.nodes


def test_recipes_left_out_of_the_few_step_runs_are_run_by_their_test() -> None:
    for stem, test in RUN_ELSEWHERE.items():
        assert (ROOT / "recipes" / f"{stem}.toml").is_file(), stem
        assert f"{stem}.toml" in (ROOT / test).read_text(), (stem, test)


def few_step_overrides(path: Path, registry: Registry, tmp: Path) -> list[str]:
    """Overrides that shrink a recipe to a few steps on a few examples, keeping everything else."""
    recipe = load_recipe(path, registry=registry).recipe
    overrides = [f'run.output_dir="{tmp / path.stem}"', "run.checkpoint_every=0", "run.batch_size=4", "run.eval_batch_size=8"]
    for name, task in recipe.tasks.items():
        overrides += [f"tasks.{name}.dataset.max_train_examples=16", f"tasks.{name}.dataset.max_eval_examples=6"]
        if task.head.type == "lm":  # generation is most of a few-step run's time
            overrides.append(f"tasks.{name}.head.max_new_tokens={min((task.head.model_extra or {}).get('max_new_tokens', 8), 8)}")
    overrides += [f"phases.{i}.steps={min(phase.steps, 2)}" for i, phase in enumerate(recipe.phases)]
    return [*overrides, "run.inference_cost=false"]  # its forward passes would cost more than the two steps


@pytest.mark.slow
@pytest.mark.parametrize("path", FEW_STEPS, ids=[p.stem for p in FEW_STEPS])
def test_recipe_runs_a_few_steps(path: Path, registry: Registry, tmp_path: Path) -> None:
    import json

    from mtkit.train.run import run_recipe

    run_dir = run_recipe(path, few_step_overrides(path, registry, tmp_path), registry=registry)
    results = json.loads((run_dir.path / "results.json").read_text())
    recipe = load_recipe(path, registry=registry).recipe
    assert set(results) == {p.name for p in recipe.phases if p.evaluate}
    assert (run_dir.path / "report.md").is_file() and (run_dir.path / "model.safetensors").is_file()
    if any(task.head.type == "lm" for task in recipe.tasks.values()):
        _check_generative_run(run_dir.path, recipe)


def _check_generative_run(run: Path, recipe: Any) -> None:
    """A generative run scores the backbone alone (`base`) beside its routing, with an interval for every score, and
    keeps prompt, output and reference of every scored generation. A run ending in a few_shot phase scores held-out
    tasks only, under its own routing (the base model is a variant of the library sweep there, not a comparison row)."""
    import json

    last = recipe.phases[-1].name
    results = json.loads((run / "results.json").read_text())[last]
    intervals = json.loads((run / "intervals.json").read_text())
    assert intervals["resamples"] == recipe.run.bootstrap_resamples and intervals["seed"] == recipe.run.seed
    for routing, by_task in results.items():
        for task, scores in by_task.items():
            bounds = intervals["intervals"][last][routing][task]
            assert set(bounds) == set(scores) and all(low <= high for low, high in bounds.values())
            folder = run / "predictions" / last / ("" if routing == recipe.phases[-1].routing else routing)
            rows = [json.loads(line) for line in (folder / f"{task}.jsonl").read_text().splitlines()]
            assert len(rows) == 6 and all({"prompt", "prediction", "reference"} <= set(row) for row in rows)
    if recipe.phases[-1].few_shot is None:
        assert "base" in results and "| task | metric | base |" in (run / "report.md").read_text()
        # Every routing against base, paired on the same examples: the difference is that of the two scores.
        differences = intervals["differences"][last]
        for routing in set(results) - {"base"}:
            for task, by_metric in differences[f"{routing} - base"].items():
                assert set(by_metric) == set(results[routing][task])
                for metric, entry in by_metric.items():
                    assert entry["difference"] == pytest.approx(results[routing][task][metric] - results["base"][task][metric], abs=1e-9)
                    low, high = entry["interval"]
                    assert low <= high
        assert "| task | metric | " + " | ".join(differences) + " |" in (run / "report.md").read_text()
    else:
        held_out = {name for name, task in recipe.tasks.items() if task.held_out}
        assert set(results) == {recipe.phases[-1].routing} and set(results[recipe.phases[-1].routing]) == held_out
