"""Broken recipes generated from the shipped ones (recipes/*.toml), checked with `mtkit validate`.

Each mutation is derived from a recipe's own tables and values: keys misspelled or added, component
types misspelled or dropped, values replaced by ones their declared field type refuses (the field's
own pydantic type decides, so a union or `Any` field is never given a value it accepts), numbers moved
out of their declared range, selectors and references pointed at nothing, sections removed, and the
file itself cut, re-encoded or given a bad override. A recipe yields a fixed, small share of each
kind (chosen by position, not at random) so the corpus stays fast and stable.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import annotated_types
from pydantic import BaseModel, TypeAdapter, ValidationError

from mtkit import Registry, UnknownComponentError
from mtkit.recipe.schema import PhaseSection, RunSection, TaskSection, component_tables
from tests.broken.case import Case, Workspace
from tests.broken.support import dump_toml
from tests.conftest import ROOT

RECIPES = sorted((ROOT / "recipes").glob("*.toml"))
SECTION_MODELS: dict[str, type[BaseModel]] = {"run": RunSection, "phases": PhaseSection, "tasks": TaskSection}
WRONG_TYPES: dict[type, list[Any]] = {bool: ["maybe"], int: ["lots", 1.5], float: ["lots"], str: [7, ["a"]], list: [7, "x"]}
PER_RECIPE = {"type": 4, "range": 2}


def _pick(items: list[Any], count: int) -> list[Any]:
    """`count` items spread over `items` (every k-th), deterministic."""
    if len(items) <= count:
        return items
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def _validate_case(name: str, raw: dict[str, Any], fragments: list[str], *, extra: list[str] | None = None) -> Case:
    def build(ws: Workspace) -> tuple[list[str], list[str]]:
        path = ws.tmp / f"{name}.toml"
        text = dump_toml(raw)
        assert tomllib.loads(text) == raw, "the TOML writer cannot express this mutation"
        path.write_text(text, encoding="utf-8")
        return ["validate", str(path), *(extra or [])], [str(path), *fragments]

    return Case(f"recipe-{name}", build)


def _bytes_case(name: str, data: bytes, fragments: list[str]) -> Case:
    def build(ws: Workspace) -> tuple[list[str], list[str]]:
        path = ws.tmp / f"{name}.toml"
        path.write_bytes(data)
        return ["validate", str(path)], [str(path), *fragments]

    return Case(f"recipe-{name}", build)


def _get(raw: dict[str, Any], path: str) -> Any:
    """The value at `path`, or None where the recipe leaves it out (component_tables also names the defaults)."""
    node: Any = raw
    for part in path.split("."):
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError):
            return None
    return node


# --- where a value sits and what its field accepts -------------------------------------------------


def _field_leaves(raw: dict[str, Any], registry: Registry) -> Iterator[tuple[str, Any, Any]]:
    """(key path, value, pydantic FieldInfo) for every scalar or list value the recipe sets, sections and components."""
    for section, model in SECTION_MODELS.items():
        node = raw.get(section)
        if section == "run":
            tables = [("run", node)]
        elif section == "phases":
            tables = [(f"phases.{i}", p) for i, p in enumerate(node or [])]
        else:
            tables = [(f"tasks.{t}", v) for t, v in (node or {}).items()]
        for prefix, table in tables:
            for key, value in (table or {}).items():
                field = model.model_fields.get(key)
                if field is not None and not isinstance(value, dict):
                    yield f"{prefix}.{key}", value, field
    for prefix, kind, table in component_tables(raw):
        try:
            config = registry.get(kind, table["type"]).config_class
        except (UnknownComponentError, KeyError, TypeError):
            continue
        for key, value in table.items():
            field = config.model_fields.get(key)
            if key != "type" and field is not None and not isinstance(value, dict):
                yield f"{prefix}.{key}", value, field


def _refuses(field: Any, value: Any) -> bool:
    """Whether the field's declared type and constraints refuse `value` (validators aside)."""
    try:
        declared = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
        TypeAdapter(declared).validate_python(value)
    except ValidationError:
        return True
    return False


def _out_of_range(field: Any) -> list[Any]:
    values = []
    for bound in field.metadata:
        if isinstance(bound, annotated_types.Gt):
            values.append(bound.gt)
        elif isinstance(bound, annotated_types.Ge):
            values.append(bound.ge - 1)
        elif isinstance(bound, annotated_types.Lt):
            values.append(bound.lt)
        elif isinstance(bound, annotated_types.Le):
            values.append(bound.le + 1)
    return values


def _set(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    *parents, last = path.split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    return out


# --- mutation kinds -----------------------------------------------------------------------------


def _value_cases(stem: str, raw: dict[str, Any], registry: Registry) -> list[Case]:
    wrong, ranged = [], []
    for path, value, field in _field_leaves(raw, registry):
        for bad in WRONG_TYPES.get(type(value), []):
            if _refuses(field, bad):
                wrong.append((path, bad))
                break
        for bad in _out_of_range(field):
            if isinstance(value, int | float) and not isinstance(value, bool) and _refuses(field, bad):
                ranged.append((path, bad))
                break
    cases = []
    for kind, chosen in (("type", _pick(wrong, PER_RECIPE["type"])), ("range", _pick(ranged, PER_RECIPE["range"]))):
        for path, bad in chosen:
            cases.append(_validate_case(f"{stem}-{kind}-{path}", _set(raw, path, bad), [f"{path}: "]))
    return cases


def _misspell(key: str) -> str:
    for i in range(1, len(key) - 1):
        if key[i] != key[i + 1] and key[i].isalpha() and key[i + 1].isalpha():
            return key[:i] + key[i + 1] + key[i] + key[i + 2 :]
    return key + "x"


def _tables(raw: dict[str, Any]) -> list[str]:
    """Key paths of the tables whose keys are checked (sections and components), in file order."""
    paths = ["run"] + [f"phases.{i}" for i in range(len(raw.get("phases", [])))] + [f"tasks.{t}" for t in raw.get("tasks", {})]
    return [p for p in [*paths, *(p for p, _, _ in component_tables(raw))] if isinstance(_get(raw, p), dict)]


def _key_cases(stem: str, raw: dict[str, Any], index: int) -> list[Case]:
    tables = _tables(raw)
    cases = []
    table = tables[index % len(tables)]
    keys = [k for k in _get(raw, table) if k != "type" and not isinstance(_get(raw, table)[k], dict)]
    if keys:
        key = keys[index % len(keys)]
        bad = _misspell(key)
        node = _get(raw, table)
        mutated = _set(raw, table, {(bad if k == key else k): v for k, v in node.items()})
        cases.append(_validate_case(f"{stem}-misspelled-{table}.{key}", mutated, [f"{table}.{bad}: unknown key; did you mean {key!r}?"]))
    other = tables[(index + 3) % len(tables)]
    cases.append(_validate_case(f"{stem}-unknown-{other}", _set(raw, other, {**_get(raw, other), "colour": "blue"}), [f"{other}.colour: unknown key"]))
    return cases


def _type_cases(stem: str, raw: dict[str, Any], index: int) -> list[Case]:
    components = [(p, k, t) for p, k, t in component_tables(raw) if isinstance(_get(raw, p), dict) and "type" in t]
    path, kind, table = components[index % len(components)]
    bad = table["type"][:-1]
    cases = [
        _validate_case(f"{stem}-type-{path}", _set(raw, path, {**table, "type": bad}), [f"{path}.type {bad!r} is not a registered {kind}"])
    ]
    path, kind, table = components[(index + 2) % len(components)]
    untyped = {k: v for k, v in table.items() if k != "type"}
    cases.append(_validate_case(f"{stem}-no-type-{path}", _set(raw, path, untyped), [f"{path}.type: field required"]))
    return cases


SELECTORS = ["adapterz", "heads.no_such_task", "backbone.layer.3", "combiner.gate", "backbone.layers.x"]


def _reference_cases(stem: str, raw: dict[str, Any], index: int) -> list[Case]:
    phase = index % len(raw["phases"])
    selector = SELECTORS[index % len(SELECTORS)]
    train = [*raw["phases"][phase].get("train", []), selector]
    cases = [
        _validate_case(
            f"{stem}-selector-{selector}", _set(raw, f"phases.{phase}.train", train), [f"phases.{phase}.train: selector {selector!r}"]
        )
    ]
    task = list(raw["tasks"])[index % len(raw["tasks"])]
    cases.append(
        _validate_case(
            f"{stem}-task-adapter", _set(raw, f"tasks.{task}.adapter", "no_such_adapter"), [f"tasks.{task}.adapter 'no_such_adapter' is not an adapter id"]
        )
    )
    section = ["tasks", "phases", "backbone"][index % 3]
    cases.append(_validate_case(f"{stem}-without-{section}", {k: v for k, v in raw.items() if k != section}, [f"{section}: field required"]))
    if len(raw["phases"]) > 1:
        twice = _set(raw, "phases.1.name", raw["phases"][0]["name"])
        cases.append(_validate_case(f"{stem}-phase-twice", twice, [f"phase name {raw['phases'][0]['name']!r} is used twice"]))
    return cases


def _file_cases(stem: str, path: Path, index: int) -> list[Case]:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    # A string left open in the second half of the file: the error must give its line.
    number = next(i for i in range(len(lines) // 2, len(lines)) if re.fullmatch(r'\s*[\w.]+\s*=\s*"[^"]*"\s*', lines[i]))
    broken = "".join(lines[:number] + [lines[number].rstrip().rstrip('"') + "\n"] + lines[number + 1 :])
    cases = [_bytes_case(f"{stem}-open-string", broken.encode(), ["invalid TOML", f"line {number + 1}"])]
    if index % 2 == 0:
        cases.append(_bytes_case(f"{stem}-latin1", ("# caf\u00e9\n" + text).encode("latin-1"), ["not UTF-8 text: byte 0xe9 at line 1, column 6"]))
    else:
        cases.append(_bytes_case(f"{stem}-utf16-no-bom", text.encode("utf-16-le"), ["not UTF-8 text: a NUL byte at line 1"]))
    return cases


def _override_cases(stem: str, raw: dict[str, Any], index: int) -> list[Case]:
    overrides = [
        ("run.seed=lots", "run.seed: input should be a valid integer"),
        ("phases.9.lr=0.1", "override 'phases.9.lr' does not name a place in the recipe"),
        ("adapters", "override 'adapters' must look like key.path=value"),
        ("run.batch_size=-4", "run.batch_size: input should be greater than 0"),
    ]
    override, fragment = overrides[index % len(overrides)]
    return [_validate_case(f"{stem}-set-{override}", raw, [fragment], extra=["--set", override])]


def recipe_cases(registry: Registry) -> list[Case]:
    """Every generated broken-recipe case."""
    cases: list[Case] = []
    for index, path in enumerate(RECIPES):
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        stem = path.stem
        cases += _value_cases(stem, raw, registry)
        cases += _key_cases(stem, raw, index)
        cases += _type_cases(stem, raw, index)
        cases += _reference_cases(stem, raw, index)
        cases += _file_cases(stem, path, index)
        cases += _override_cases(stem, raw, index)
    return cases
