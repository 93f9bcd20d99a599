"""Broken input whose fix belongs to the core modules (recipe validation, build, training, plugin loading).

Generated like every other case: each must end with exit 2 and a message naming the file and key path.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from typing import Any

import pytest

from tests.broken.case import Case, Workspace
from tests.broken.support import dump_toml, review_rows, tiny_recipe, write_jsonl
from tests.conftest import ROOT

Edit = Callable[[dict[str, Any]], None]


def _tiny(command: str, edit: Edit, fragments: list[str], *, steps: int = 1, marks: list[Any] | None = None) -> Callable[[str], Case]:
    def make(name: str) -> Case:
        def build(ws: Workspace) -> tuple[list[str], list[str]]:
            data = write_jsonl(ws.tmp / "reviews.jsonl", review_rows())
            recipe = tiny_recipe({"type": "json", "data_files": str(data)}, ws.tmp / "run", steps=steps)
            edit(recipe)
            path = ws.tmp / "recipe.toml"
            path.write_text(dump_toml(recipe), encoding="utf-8")
            return [command, str(path)], [str(path), *fragments]

        return Case(f"core-{name}", build, marks=marks or [])

    return make


def _set(path: str, value: Any) -> Edit:
    def edit(recipe: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = recipe
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value

    return edit


def _train(selector: str) -> Edit:
    return _set("phases.0.train", [selector, "heads"])


def _broken_plugin(ws: Workspace) -> tuple[list[str], list[str]]:
    """An installed plugin (a dist-info with an entry point) whose module fails to import, and a recipe asking for its combiner."""
    site = ws.tmp / "site"
    dist = site / "mtkit_sparse_gate-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mtkit-sparse-gate\nVersion: 0.1.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text("[mtkit]\nsparse_gate = mtkit_sparse_gate\n", encoding="utf-8")
    (site / "mtkit_sparse_gate.py").write_text('raise ImportError("needs libsparse, which is not installed")\n', encoding="utf-8")
    recipe = tomllib.loads((ROOT / "recipes" / "quickstart.toml").read_text(encoding="utf-8"))
    recipe["combiner"] = {"type": "sparse_gate"}
    path = ws.tmp / "recipe.toml"
    path.write_text(dump_toml(recipe), encoding="utf-8")
    ws.env["PYTHONPATH"] = str(site)
    return ["validate", str(path)], [str(path), "combiner.type 'sparse_gate'", "mtkit-sparse-gate", "failed to load"]


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


NO_CUDA = pytest.mark.skipif(_has_cuda(), reason="needs a machine without CUDA")

CORE: dict[str, Callable[[str], Case]] = {
    "seed-2-to-the-70": _tiny("run", _set("run.seed", 2**70), ["run.seed"]),
    "hidden-size-negative": _tiny(
        "run", _set("backbone.config_overrides.hidden_size", -1), ["backbone.config_overrides"]
    ),
    "target-modules-bad-regex": _tiny(
        "validate", _set("adapters.reviews.target_modules", ["re:(query"]), ["adapters.reviews.target_modules"]
    ),
    "selector-layer-99": _tiny("run", _train("backbone.layers.99"), ["phases.0.train", "backbone.layers.99"]),
    "selector-reversed-range": _tiny("validate", _train("backbone.layers.5-2"), ["phases.0.train", "backbone.layers.5-2"]),
    "selector-combiner-under-oracle": _tiny("run", _train("combiner"), ["phases.0.train", "combiner"]),
    "lr-diverges": _tiny("run", _set("phases.0.lr", 1e30), ["phases.0", "step"], steps=3),
    "alpha-infinite": _tiny("run", _set("adapters.reviews.alpha", float("inf")), ["adapters.reviews.alpha"]),
    "device-cuda-without-cuda": _tiny("run", _set("run.device", "cuda"), ["run.device", "cuda"], marks=[NO_CUDA]),
}


def _run_not_a_table(ws: Workspace) -> tuple[list[str], list[str]]:
    text = (ROOT / "recipes" / "quickstart.toml").read_text(encoding="utf-8")
    path = ws.tmp / "recipe.toml"
    path.write_text("run = [1, 2]\n" + text.replace("[run]", "[run_old]", 1), encoding="utf-8")
    return ["validate", str(path)], [str(path), "run: input should be a valid dictionary"]


def core_cases() -> list[Case]:
    """The cases of the core's list, and the two of it that the run-directory and recipe-file readers fix."""
    cases = [make(name) for name, make in CORE.items()]
    cases.append(Case("core-failed-plugin-named", _broken_plugin, subprocess=True))
    cases.append(Case("recipe-run-not-a-table", _run_not_a_table))
    return cases
