"""The layers of mtkit's core: every import goes downward, and `from mtkit import ...` keeps every public name."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

import mtkit

ROOT = Path(__file__).resolve().parents[2] / "mtkit"
LAYERS = ["api", "recipe", "data", "model", "rundir", "train", "testing", "sweep", "serve", "cli"]
"""Bottom first: a module may import its own layer and the layers before it."""


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "mtkit" or len(parts) < 2:
        return None
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else None


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every `mtkit.*` module the file imports (top level, inside functions and under TYPE_CHECKING alike)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return [(line, name) for line, name in found if name == "mtkit" or name.startswith("mtkit.")]


def test_layout_every_core_module_sits_in_a_layer() -> None:
    loose = sorted(p.name for p in ROOT.glob("*.py") if p.name not in {"__init__.py", "__main__.py"})
    assert loose == [], f"modules outside the layer packages: {loose}"
    packages = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file())
    assert set(packages) <= set(LAYERS), f"unknown layer packages: {sorted(set(packages) - set(LAYERS))}"
    # A package the wheel leaves out imports in an editable checkout but not once installed.
    listed = set(tomllib.loads((ROOT.parent / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    found = {".".join(p.relative_to(ROOT.parent).parts[:-1]) for p in ROOT.rglob("__init__.py")}
    assert found <= listed, f"packages missing from pyproject.toml's [tool.setuptools] packages: {sorted(found - listed)}"


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_layout_imports_only_go_down(path: Path) -> None:
    own = _layer("mtkit." + ".".join(path.relative_to(ROOT).with_suffix("").parts))
    if own is None:
        return  # mtkit/__init__.py (re-exports mtkit.api) and __main__.py (starts the CLI)
    upward = []
    for line, name in _imports(path):
        if name == "mtkit":
            if own > 0:  # below the API, `from mtkit import X` would go through the package's re-exports
                continue
            upward.append(f"line {line}: mtkit (the API layer imports its own modules)")
            continue
        target = _layer(name)
        if target is not None and target > own:
            upward.append(f"line {line}: {name} ({LAYERS[target]} is above {LAYERS[own]})")
    assert not upward, f"{path.relative_to(ROOT.parent)} imports upward: " + "; ".join(upward)


def test_layout_package_root_reexports_the_api_only() -> None:
    names = [name for _, name in _imports(ROOT / "__init__.py")]
    assert all(name.startswith("mtkit.api") for name in names), names
    for name in mtkit.__all__:
        assert getattr(mtkit, name) is not None, name
    assert mtkit.lowrank.LowRank is mtkit.LowRank and mtkit.component_seed(0, "a") == mtkit.component_seed(0, "a")
