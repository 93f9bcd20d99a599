"""The documentation cannot go stale: the generated recipe reference and the README's component table match the
registered components, and every `mtkit ...` command shown in README.md and docs/ names a real command with real
options."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import typer.main

from mtkit import Registry
from mtkit.cli.app import app
from mtkit.recipe.reference import component_table, recipe_reference
from mtkit.recipe.resolve import resolve
from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_recipe_reference_is_what_mtkit_docs_generates(registry: Registry) -> None:
    committed = (ROOT / "docs" / "recipes.md").read_text(encoding="utf-8")
    assert committed == recipe_reference(registry), "docs/recipes.md is stale: run `mtkit docs --output docs/recipes.md`"


def test_readme_component_table_is_what_mtkit_docs_generates(registry: Registry) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    _, found, section = readme.partition("\n## Components\n")
    assert found, "README.md has no '## Components' section"
    lines = section.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), len(lines))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    table = "".join(line + "\n" for line in lines[start:end])
    assert table == component_table(registry), "README.md's component table is stale: paste `mtkit docs --components`"


def test_readme_recipe_is_a_valid_recipe(registry: Registry) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [tomllib.loads(block) for block in re.findall(r"```toml\n(.*?)```", readme, flags=re.DOTALL)]
    recipes = [block for block in blocks if "phases" in block]
    assert recipes, "README.md shows no recipe (a ```toml block with [[phases]])"
    for recipe in recipes:
        resolve(recipe, registry, "README.md")


def _commands(path: Path) -> list[str]:
    """`mtkit ...` lines of the fenced code blocks (continuation lines joined, comments dropped)."""
    text = path.read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.DOTALL):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line.strip())
            if line.startswith("mtkit "):
                found.append(line)
    return found


COMMANDS = [(path, line) for path in DOCS for line in _commands(path)]


def test_docs_show_mtkit_commands() -> None:
    assert len(COMMANDS) >= 10 and any("mtkit run recipes/dynamo.toml" in line for _, line in COMMANDS)


@pytest.mark.parametrize(("path", "line"), COMMANDS, ids=[f"{p.name}:{line[:60]}" for p, line in COMMANDS])
def test_docs_command_names_a_real_command_and_options(path: Path, line: str) -> None:
    group = typer.main.get_command(app)
    words = shlex.split(line.replace("[", " ").replace("]", " ").replace("|", " "))[1:]
    name = words[0]
    commands = group.commands  # type: ignore[attr-defined]
    command = commands.get(name)
    assert command is not None, f"{path.name}: `{line}`: no command {name!r} (commands: {', '.join(sorted(commands))})"
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    used = {w.split("=", 1)[0] for w in words[1:] if w.startswith("--")}
    unknown = sorted(used - options)
    assert not unknown, f"{path.name}: `{line}`: {name} has no option {', '.join(unknown)} (options: {', '.join(sorted(options))})"
