"""`--set key.path=value` overrides: values parsed as TOML, applied to a raw recipe before validation."""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Sequence
from typing import Any

from mtkit.api.errors import RecipeError

__all__ = ["apply_overrides", "parse_value"]


def parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string: --set adapters.a.type=lora


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str], source: str) -> dict[str, Any]:
    """Apply `key.path=value` overrides (values parsed as TOML, else taken as strings)."""
    problems = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"{source}: override {item!r} must look like key.path=value")
            continue
        node: Any = raw
        parts = key.strip().split(".")
        try:
            for depth, part in enumerate(parts[:-1]):
                creates_component = depth == len(parts) - 2 and parts[-1] == "type"
                if isinstance(node, dict) and part not in node and not creates_component:
                    _check_new_table(node, part, ".".join(parts[:depth]), source, key)
                node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
            last = parts[-1]
            if isinstance(node, list):
                node[int(last)] = parse_value(value)
            elif isinstance(node, dict):
                node[last] = parse_value(value)
            else:
                raise TypeError
        except (ValueError, IndexError, TypeError, AttributeError):
            problems.append(f"{source}: override {key!r} does not name a place in the recipe")
    if problems:
        raise RecipeError(problems)
    return raw


def _check_new_table(node: dict[str, Any], part: str, parent: str, source: str, key: str) -> None:
    """An override that would add a table next to a near-namesake (`adapters.sentimnt` beside `sentiment`) is a typo
    (one that sets the new table's `type`, `adapters.topic2.type=lora`, adds a component on purpose)."""
    close = difflib.get_close_matches(part, [k for k, v in node.items() if isinstance(v, dict)], n=1, cutoff=0.75)
    if close:
        where = f"{parent}.{part}" if parent else part
        raise RecipeError(
            [f"{source}: override {key!r}: the recipe has no {where!r}; did you mean {close[0]!r}? "
             f"(to add a new table, give it a name no closer to an existing one)"]
        )
