"""What is installed: component listings, config field tables and the recipe JSON Schema.

Reads config classes only, so none of this imports torch.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from mtkit.api.registry import ComponentEntry, Registry
from mtkit.recipe.schema import TABLES, Recipe

__all__ = ["component_fields", "listing", "model_fields", "recipe_schema"]


def _entry_json(entry: ComponentEntry) -> dict[str, Any]:
    return {
        "kind": entry.kind,
        "name": entry.name,
        "plugin": entry.plugin.name,
        "distribution": entry.plugin.distribution,
        "version": entry.plugin.version,
        "summary": entry.summary,
    }


def listing(registry: Registry, kind: str | None = None) -> dict[str, Any]:
    """Components (optionally of one kind) and every plugin with its load status."""
    return {
        "components": [_entry_json(e) for e in registry.components(kind)],
        "plugins": [
            {
                "name": p.name,
                "distribution": p.distribution,
                "version": p.version,
                "status": p.status,
                "error": p.error,
                "components": [f"{k}:{n}" for k, n in p.components],
            }
            for p in registry.plugins
        ],
    }


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return text or re.sub(r"\b(?:[a-z_]\w*\.)+(\w+)", r"\1", str(annotation))  # typing.Literal, mtkit.recipe.schema.X -> Literal, X


def _default_text(value: Any) -> str:
    if isinstance(value, BaseModel):  # a recipe section or component table left out
        kind = getattr(value, "type", None)
        return f"type = {kind!r}" if kind is not None else "its fields' defaults"
    return repr(value)


_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "min_length": "length >=", "max_length": "length <=", "pattern": "matches"}


def _constraints(metadata: list[Any]) -> str:
    """`> 0, <= 4096` from a field's annotated-types and pydantic metadata."""
    parts = []
    for item in metadata:
        for attr, sign in _BOUNDS.items():
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{sign} {value!r}" if attr == "pattern" else f"{sign} {value}")
    return ", ".join(parts)


def model_fields(model: type[BaseModel]) -> list[dict[str, str]]:
    """One row per field of a pydantic model (a component's config, or a recipe section)."""
    rows = []
    for name, field in model.model_fields.items():
        if field.default is not PydanticUndefined:
            default = _default_text(field.default)
        elif field.default_factory is not None:
            default = _default_text(field.default_factory())  # type: ignore[call-arg]
        else:
            default = "(required)"
        constraints = _constraints(field.metadata)
        rows.append(
            {
                "field": name,
                "type": _type_name(field.annotation),
                "default": default,
                "constraints": constraints,
                "description": field.description or "",
            }
        )
    return rows


def component_fields(entry: ComponentEntry) -> list[dict[str, str]]:
    """One row per config field: name, type, default, constraints and description."""
    return model_fields(entry.config_class)


def _component_schema(registry: Registry, kind: str) -> dict[str, Any]:
    options = []
    for entry in registry.components(kind):
        schema = copy.deepcopy(entry.config_class.model_json_schema())
        schema.setdefault("properties", {})["type"] = {"const": entry.name, "description": entry.summary}
        schema["required"] = ["type", *schema.get("required", [])]
        schema["additionalProperties"] = False
        schema["title"] = f"{kind}: {entry.name}"
        options.append(schema)
    return {"anyOf": options} if options else {"type": "object"}


def _resolve_ref(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return defs[ref.rsplit("/", 1)[-1]] if isinstance(ref, str) else schema


def _place(node: dict[str, Any], parts: list[str], ref: dict[str, Any], defs: dict[str, Any]) -> None:
    """Replace the schema at the table pattern `parts` (`*` a table key, `#` a list index) with `ref`."""
    node = _resolve_ref(node, defs)
    if "anyOf" in node:  # an optional table or a str-or-table union: descend into its object branches
        for branch in node["anyOf"]:
            if branch.get("type") not in ("null", "string"):
                _place(branch, parts, ref, defs)
        return
    part, rest = parts[0], parts[1:]
    key = "additionalProperties" if part == "*" else "items" if part == "#" else None
    container = node if key else node.setdefault("properties", {})
    slot = key or part
    if rest:
        _place(container[slot], rest, ref, defs)
        return
    old = _resolve_ref(container.get(slot, {}), defs)
    allows_string = any(b.get("type") == "string" for b in old.get("anyOf", ()))  # a metric may be a bare name
    allows_null = any(b.get("type") == "null" for b in container.get(slot, {}).get("anyOf", ()))
    options = [ref] + ([{"type": "string"}] if allows_string else []) + ([{"type": "null"}] if allows_null else [])
    description = container.get(slot, {}).get("description")
    container[slot] = {"anyOf": options} if len(options) > 1 else dict(ref)
    if description:
        container[slot]["description"] = description


def recipe_schema(registry: Registry) -> dict[str, Any]:
    """JSON Schema of a recipe with every component table spelled out per registered type."""
    schema = Recipe.model_json_schema()
    defs = schema.setdefault("$defs", {})
    for kind in sorted({kind for _, kind in TABLES}):
        defs[f"{kind}_component"] = _component_schema(registry, kind)
    for pattern, kind in TABLES:
        _place(schema, pattern.split("."), {"$ref": f"#/$defs/{kind}_component"}, defs)
    defs.pop("ComponentTable", None)
    schema["title"] = "mtkit recipe"
    return schema
