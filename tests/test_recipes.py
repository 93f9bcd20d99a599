"""Every shipped recipe validates (both passes, without building models)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtkit import Registry
from mtkit.recipe.resolve import load_recipe

RECIPES = sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.toml"))


def test_recipes_exist() -> None:
    assert any(p.name == "quickstart.toml" for p in RECIPES)


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_validates(path: Path, registry: Registry) -> None:
    resolved = load_recipe(path, registry=registry)
    assert resolved.recipe.phases and resolved.recipe.tasks and "backbone" in resolved.nodes


def few_step_overrides(path: Path, registry: Registry, tmp: Path) -> list[str]:
    """Overrides that shrink a recipe to a few steps on a few examples, keeping everything else."""
    recipe = load_recipe(path, registry=registry).recipe
    overrides = [f'run.output_dir="{tmp / path.stem}"', "run.checkpoint_every=0", "run.batch_size=4", "run.eval_batch_size=8"]
    for name in recipe.tasks:
        overrides += [f"tasks.{name}.dataset.max_train_examples=16", f"tasks.{name}.dataset.max_eval_examples=6"]
    overrides += [f"phases.{i}.steps={min(phase.steps, 2)}" for i, phase in enumerate(recipe.phases)]
    return [*overrides, "run.inference_cost=false"]  # its forward passes would cost more than the two steps


@pytest.mark.slow
@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_runs_a_few_steps(path: Path, registry: Registry, tmp_path: Path) -> None:
    import json

    from mtkit.train.run import run_recipe

    run_dir = run_recipe(path, few_step_overrides(path, registry, tmp_path), registry=registry)
    results = json.loads((run_dir.path / "results.json").read_text())
    recipe = load_recipe(path, registry=registry).recipe
    assert set(results) == {p.name for p in recipe.phases if p.evaluate}
    assert (run_dir.path / "report.md").is_file() and (run_dir.path / "model.safetensors").is_file()
