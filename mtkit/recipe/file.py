"""Reading a recipe file (TOML, or the JSON recipe a run directory saves) into a raw dict.

Only the bytes and the syntax are checked here; the structure is the validator's job (mtkit.recipe.schema).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from mtkit.api.errors import MtkitError, RecipeError
from mtkit.api.textfile import decode_text

__all__ = ["read_recipe_file"]

_FIX = "save the recipe as UTF-8 (most editors offer it under 'Save with encoding')"


def _not_a_file(path: Path) -> str:
    if path.is_dir():
        if (path / "recipe.json").is_file():
            return f"{path}: is a run directory, not a recipe file; pass {path / 'recipe.json'} to run its recipe again"
        found = sorted(p.name for p in path.glob("*.toml"))
        hint = f" (it holds {', '.join(found[:3])}{', ...' if len(found) > 3 else ''})" if found else ""
        return f"{path}: is a directory, not a recipe file; pass a .toml file inside it{hint}"
    return f"{path}: no such recipe file; check the path (recipes live in recipes/*.toml)"


def read_recipe_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML recipe (or the JSON one a run directory saves) into a dict.

    UTF-8 with or without a byte-order mark is read, and so is UTF-16/32 with a byte-order mark;
    other encodings are refused with the line and column of the first undecodable byte. A missing
    `run.name` defaults to the file's stem.

    Raises:
        RecipeError: the path is not a readable file, not decodable text, or not valid TOML/JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError([_not_a_file(path)])
    try:
        text = decode_text(path.read_bytes(), path, fix=_FIX)
    except OSError as exc:
        raise RecipeError([f"{path}: cannot read the recipe file ({exc.strerror or type(exc).__name__}); check its permissions"]) from None
    except MtkitError as exc:
        raise RecipeError([str(exc)]) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError([f"{path}: invalid TOML: {exc}"]) from None
    except json.JSONDecodeError as exc:
        raise RecipeError([f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]) from None
    if not isinstance(data, dict):
        raise RecipeError([f"{path}: a JSON recipe must be an object of tables (got {type(data).__name__})"])
    run = data.setdefault("run", {})
    if isinstance(run, dict):  # another shape is the validator's to report, with its key path
        run.setdefault("name", re.sub(r"[^\w.-]", "_", path.stem))
    return data
