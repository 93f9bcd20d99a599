"""in_recipe: errors raised while building a component gain the recipe file and full key path, nothing else changes."""

from __future__ import annotations

import pytest

from mtkit.api.errors import MtkitError, PluginError, RecipeError
from mtkit.model.build import in_recipe


def test_in_recipe_prefixes_file_and_key_path_and_keeps_the_error_class() -> None:
    with pytest.raises(PluginError) as info, in_recipe("my.toml", "combiner"):
        raise PluginError("acme-mtkit", "must be positive", key="temperature")
    assert str(info.value) == "my.toml: combiner.temperature: must be positive"
    assert info.value.plugin == "acme-mtkit"


@pytest.mark.parametrize(
    ("path", "key", "expected"),
    [
        ("backbone", "config_overrides.hidden_size", "my.toml: backbone.config_overrides.hidden_size: not allowed"),
        ("backbone", None, "my.toml: backbone: not allowed"),
        (None, None, "my.toml: not allowed"),
    ],
)
def test_in_recipe_joins_the_component_path_and_the_errors_own_key(path: str | None, key: str | None, expected: str) -> None:
    with pytest.raises(MtkitError) as info, in_recipe("my.toml", path):
        raise MtkitError("not allowed", key=key)
    assert type(info.value) is MtkitError
    assert str(info.value) == expected


def test_in_recipe_locates_an_error_once() -> None:
    with pytest.raises(MtkitError) as info, in_recipe("outer.toml", "tasks.a.head"), in_recipe("my.toml", "backbone"):
        raise MtkitError("not allowed", key="model")
    assert str(info.value) == "my.toml: backbone.model: not allowed"


def test_in_recipe_leaves_recipe_errors_and_other_exceptions_alone() -> None:
    with pytest.raises(RecipeError) as info, in_recipe("my.toml", "combiner"):
        raise RecipeError(["my.toml: combiner.type: unknown"])
    assert str(info.value) == "my.toml: combiner.type: unknown"
    with pytest.raises(ValueError, match="^bad$"), in_recipe("my.toml", "combiner"):
        raise ValueError("bad")
