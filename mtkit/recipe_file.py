"""Reading a recipe file: TOML, or the JSON recipe a run directory saves."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from mtkit.errors import RecipeError

__all__ = ["read_recipe_file"]


def read_recipe_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML recipe (or the JSON one a run directory saves)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError([f"{path}: no such recipe file; check the path (recipes live in recipes/*.toml)"])
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError([f"{path}: invalid TOML: {exc}"]) from None
    except json.JSONDecodeError as exc:
        raise RecipeError([f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]) from None
    if not isinstance(data, dict):
        raise RecipeError([f"{path}: a recipe is a table of sections (run, backbone, tasks, phases ...), not {type(data).__name__}"])
    run = data.setdefault("run", {})
    if isinstance(run, dict):  # anything else is pass 1's to report, with its key path
        run.setdefault("name", re.sub(r"[^\w.-]", "_", path.stem))
    return data
