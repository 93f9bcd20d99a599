"""Libraries: a recipe table that declares many saved adapters at once (`libraries.<label>`).

A library table names an adapter `type` and that type's params, one of which says where the saved adapters are
(a directory of saved adapters or a glob). Before validation, each library becomes ordinary
`adapters.<id>` tables, one per saved adapter, so everything downstream (oracle routing by task name, combiners,
selectors, export) sees plain adapters. The adapter type's config class lists the members
(`AdapterConfig.library_members`); a run directory records the library table, and reloading the run expands it again.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, cast

from pydantic import ValidationError

from mtkit.api.config import AdapterConfig
from mtkit.api.errors import MtkitError, UnknownComponentError
from mtkit.api.registry import Registry

__all__ = ["LIBRARIES", "expand_libraries"]

LIBRARIES = "libraries"
"""The recipe key whose tables are libraries."""


def _importers(registry: Registry) -> list[str]:
    """Adapter types whose config class can list a library's members."""
    base = AdapterConfig.library_members.__func__  # type: ignore[attr-defined]
    return sorted(
        e.name for e in registry.components("adapter") if getattr(getattr(e.config_class, "library_members", None), "__func__", base) is not base
    )


def expand_libraries(raw: Mapping[str, Any], registry: Registry, source: str) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """The raw recipe with every library's members added as `adapters.<id>` tables.

    Returns:
        The expanded recipe (a copy; the library tables stay, for validation and the JSON schema), where each added
        adapter came from (`adapters.<id>` -> `libraries.<label>`, for error messages), and the problems found.
        A library whose table is malformed or whose params do not validate is left unexpanded: the validation
        passes report those problems, once, at the library's own key path.
    """
    libraries = raw.get(LIBRARIES)
    if not isinstance(libraries, Mapping) or not libraries:
        return dict(raw), {}, []
    data = copy.deepcopy(dict(raw))
    explicit = data.get("adapters")
    adapters: dict[str, Any] = dict(explicit) if isinstance(explicit, Mapping) else {}
    origins: dict[str, str] = {}
    problems: list[str] = []
    for label, table in libraries.items():
        path = f"{LIBRARIES}.{label}"
        if not isinstance(table, Mapping) or not isinstance(table.get("type"), str):
            continue
        try:
            entry = registry.get("adapter", table["type"])
        except UnknownComponentError:
            continue
        params = {k: v for k, v in table.items() if k != "type"}
        try:
            entry.config_class.model_validate(params)
        except ValidationError:
            continue
        if table["type"] not in _importers(registry):
            can = ", ".join(_importers(registry)) or "none installed"
            problems.append(f"{source}: {path}.type: adapter type {table['type']!r} cannot import a library of saved adapters (types that can: {can})")
            continue
        config_class = cast(type[AdapterConfig], entry.config_class)
        try:
            members = config_class.library_members(params)
        except MtkitError as exc:
            exc.locate(source, path)
            problems.append(str(exc))
            continue
        for name, member in members.items():
            if name in adapters:
                other = origins.get(f"adapters.{name}", f"adapters.{name}")
                problems.append(
                    f"{source}: {path}: its adapter {name!r} clashes with {other}, which defines {name!r} too; "
                    "rename one of them (a library's adapters are named after their folders)"
                )
                continue
            adapters[name] = {"type": table["type"], **member}
            origins[f"adapters.{name}"] = path
    data["adapters"] = adapters
    return data, origins, problems
