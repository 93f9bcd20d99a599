"""Every shipped recipe validates (both passes, without building models)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtkit import Registry
from mtkit.recipe import load_recipe

RECIPES = sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.toml"))


def test_recipes_exist() -> None:
    assert any(p.name == "quickstart.toml" for p in RECIPES)


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_validates(path: Path, registry: Registry) -> None:
    recipe, configs, _ = load_recipe(path, registry=registry)
    assert recipe.phases and recipe.tasks and "backbone" in configs
