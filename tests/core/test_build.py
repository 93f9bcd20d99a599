"""in_recipe: errors raised while building a component gain the recipe file and key path, nothing else changes."""

from __future__ import annotations

import pytest

from mtkit.build import in_recipe
from mtkit.errors import MtkitError, PluginError, RecipeError


def test_in_recipe_prefixes_file_and_key_path_and_keeps_the_error_class() -> None:
    with pytest.raises(PluginError) as info, in_recipe("my.toml", "combiner"):
        raise PluginError("acme-mtkit", "temperature: must be positive")
    assert str(info.value) == "my.toml: combiner: temperature: must be positive"
    assert info.value.plugin == "acme-mtkit"


@pytest.mark.parametrize(
    ("path", "message", "expected"),
    [
        ("backbone", "config_overrides: unknown key", "my.toml: backbone: config_overrides: unknown key"),
        ("backbone", "backbone.model: not found", "my.toml: backbone.model: not found"),  # already names its path
        (None, "task 'topic', row 3: empty text", "my.toml: task 'topic', row 3: empty text"),
        ("backbone", "my.toml: backbone: no such file", "my.toml: backbone: no such file"),  # already prefixed
    ],
)
def test_in_recipe_adds_only_what_the_message_lacks(path: str | None, message: str, expected: str) -> None:
    with pytest.raises(MtkitError) as info, in_recipe("my.toml", path):
        raise MtkitError(message)
    assert type(info.value) is MtkitError
    assert str(info.value) == expected


def test_in_recipe_leaves_recipe_errors_and_other_exceptions_alone() -> None:
    with pytest.raises(RecipeError) as info, in_recipe("my.toml", "combiner"):
        raise RecipeError(["my.toml: combiner.type: unknown"])
    assert str(info.value) == "my.toml: combiner.type: unknown"
    with pytest.raises(ValueError, match="^bad$"), in_recipe("my.toml", "combiner"):
        raise ValueError("bad")
