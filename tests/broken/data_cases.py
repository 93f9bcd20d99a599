"""Broken data files generated from one small review dataset, run through `mtkit run` with the generic loaders.

A damage (a bad byte, a blank or ragged row, a wrong label, the wrong loader...) is applied to the
same rows written as CSV, TSV and JSON Lines, where the damage means something for that format. The
message must name the recipe, the data file (where one is to blame) and the row or line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets

from tests.broken.case import Case, Workspace
from tests.broken.support import csv_text, dump_toml, review_rows, tiny_recipe, write_jsonl

ROW = 13  # the damaged data row (0-based); the held-out split and the shuffle move it, messages must not
FORMATS: dict[str, dict[str, Any]] = {
    "csv": {"table": {"type": "csv"}, "suffix": ".csv", "delimiter": ","},
    "tsv": {"table": {"type": "csv", "delimiter": "\t"}, "suffix": ".tsv", "delimiter": "\t"},
    "jsonl": {"table": {"type": "json"}, "suffix": ".jsonl", "delimiter": None},
}
NAMES = {"label_names": ["neg", "pos"]}


def write(fmt: str, path: Path, rows: list[dict[str, Any]]) -> Path:
    if fmt == "jsonl":
        return write_jsonl(path, rows)
    path.write_text(csv_text(rows, FORMATS[fmt]["delimiter"]), encoding="utf-8")
    return path


def line_of(fmt: str, row: int) -> int:
    """The file line of data row `row`: CSV and TSV have a header line."""
    return row + 2 if fmt != "jsonl" else row + 1


Damage = Callable[[Path, str], tuple[dict[str, Any], list[str]]]
"""(case folder, format) -> (the dataset table, message fragments); writes the data file."""


def _run_case(name: str, damage: Damage, fmt: str) -> Case:
    def build(ws: Workspace) -> tuple[list[str], list[str]]:
        table, fragments = damage(ws.tmp, fmt)
        recipe = ws.tmp / "recipe.toml"
        recipe.write_text(dump_toml(tiny_recipe(table, ws.tmp / "run")), encoding="utf-8")
        return ["run", str(recipe)], [str(recipe), *fragments]

    return Case(f"data-{name}-{fmt}", build)


def _rows_damage(change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]], extra: dict[str, Any], what: Callable[[Path, str], list[str]]) -> Damage:
    def damage(tmp: Path, fmt: str) -> tuple[dict[str, Any], list[str]]:
        path = write(fmt, tmp / f"reviews{FORMATS[fmt]['suffix']}", change(review_rows()))
        return FORMATS[fmt]["table"] | {"data_files": str(path)} | extra, what(path, fmt)

    return damage


def _set_row(key: str, value: Any) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    def change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows[ROW][key] = value
        return rows

    return change


def _at_row(path: Path, fmt: str) -> list[str]:
    return [f"train row {ROW} ({path} line {line_of(fmt, ROW)})"]


def _raw_damage(text: Callable[[str, str], bytes], what: Callable[[Path, str], list[str]], extra: dict[str, Any] | None = None, table_fmt: str | None = None) -> Damage:
    """Damage the file's bytes (`text(clean text, format) -> bytes`); `table_fmt` reads it with another format's loader."""

    def damage(tmp: Path, fmt: str) -> tuple[dict[str, Any], list[str]]:
        clean = write(fmt, tmp / "clean", review_rows()).read_text(encoding="utf-8")
        path = tmp / f"reviews{FORMATS[fmt]['suffix']}"
        path.write_bytes(text(clean, fmt))
        return FORMATS[table_fmt or fmt]["table"] | {"data_files": str(path)} | (extra or {}), what(path, fmt)

    return damage


def _row_line(fmt: str) -> int:
    return line_of(fmt, ROW)


def _replace_row(new: str) -> Callable[[str, str], bytes]:
    """Replace the damaged row's line with `new` (its commas become the format's delimiter)."""

    def text(clean: str, fmt: str) -> bytes:
        lines = clean.splitlines()
        lines[_row_line(fmt) - 1] = new.replace(",", FORMATS[fmt]["delimiter"] or ",")
        return ("\n".join(lines) + "\n").encode()

    return text


def _latin1(clean: str, fmt: str) -> bytes:
    lines = clean.splitlines()
    lines[_row_line(fmt) - 1] = lines[_row_line(fmt) - 1].replace("film", "caf\u00e9 film")
    return ("\n".join(lines) + "\n").encode("latin-1")


def _json_document(records_key: str | None) -> Damage:
    def damage(tmp: Path, fmt: str) -> tuple[dict[str, Any], list[str]]:
        path = tmp / "reviews.json"
        path.write_text(json.dumps({"records": review_rows()}), encoding="utf-8")
        table = {"type": "json", "data_files": str(path)} | ({"field": records_key} if records_key else {})
        return table, [str(path), f"has no key {records_key!r}" if records_key else "set the dataset's field"]

    return damage


def _path_damage(files: Callable[[Path], Any], fragments: Callable[[Path], list[str]]) -> Damage:
    def damage(tmp: Path, fmt: str) -> tuple[dict[str, Any], list[str]]:
        return FORMATS[fmt]["table"] | {"data_files": files(tmp)}, fragments(tmp)

    return damage


def _split_files(tmp: Path) -> dict[str, str]:
    train = write("csv", tmp / "train.csv", review_rows())
    test = tmp / "test.csv"
    test.write_text(csv_text(review_rows(6)) + "a,b,c\n", encoding="utf-8")  # line 8: three fields
    return {"train": str(train), "test": str(test)}


def _parquet(cut: bool) -> Damage:
    def damage(tmp: Path, fmt: str) -> tuple[dict[str, Any], list[str]]:
        path = tmp / "reviews.parquet"
        datasets.Dataset.from_list(review_rows()).to_parquet(str(path))
        if cut:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        else:  # a CSV file given to the parquet loader
            path = write("csv", tmp / "reviews.csv", review_rows())
        return {"type": "parquet", "data_files": str(path)}, [str(path), "is not a readable Parquet file"]

    return damage


def _config_damage(extra: dict[str, Any], fragments: list[str]) -> Damage:
    return _rows_damage(lambda rows: rows, extra, lambda path, fmt: fragments)


def _ints(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = [{"text": r["text"], "label": int(r["label"] == "pos")} for r in rows]
    out[ROW]["label"] = 7
    return out


ALL, TEXT, CSV_LIKE, JSONL = ("csv", "tsv", "jsonl"), ("csv", "jsonl"), ("csv", "tsv"), ("jsonl",)

DAMAGES: dict[str, tuple[Damage, tuple[str, ...]]] = {
    "empty-label": (_rows_damage(_set_row("label", ""), {}, _at_row), ALL),
    "label-not-in-names": (_rows_damage(_set_row("label", "meh"), NAMES, _at_row), ALL),
    "single-class": (_rows_damage(lambda rows: [r | {"label": "pos"} for r in rows], {}, lambda p, f: ["same label 'pos' in every row"]), ALL),
    "names-without-label-column": (
        _rows_damage(lambda rows: [{"text": r["text"], "stars": r["label"]} for r in rows], NAMES, lambda p, f: ["has no field 'label'"]),
        ALL,
    ),
    "no-text-column": (
        _rows_damage(lambda rows: [{"review": r["text"], "label": r["label"]} for r in rows], {}, lambda p, f: ["every row", "field 'text' is missing"]),
        TEXT,
    ),
    "latin1-byte": (_raw_damage(_latin1, lambda p, f: [str(p), f"line {_row_line(f)} is not utf-8 text", "encoding"]), ALL),
    "utf16": (_raw_damage(lambda clean, fmt: clean.encode("utf-16"), lambda p, f: [str(p), "line 1 is not utf-8 text", "utf-16"]), TEXT),
    "empty-file": (_raw_damage(lambda clean, fmt: b"", lambda p, f: [str(p), "is empty"]), ALL),
    "header-only": (_raw_damage(lambda clean, fmt: clean.splitlines(keepends=True)[0].encode(), lambda p, f: [str(p), "is empty"]), CSV_LIKE),
    "blank-row": (_raw_damage(_replace_row(","), _at_row), CSV_LIKE),
    "short-row": (_raw_damage(_replace_row("only text here"), _at_row), CSV_LIKE),
    "long-row": (_raw_damage(_replace_row("a,b,c"), lambda p, f: [str(p), f"line {_row_line(f)} has 3"]), CSV_LIKE),
    "bad-json-line": (_raw_damage(_replace_row('{"text": "x" "label": "pos"}'), lambda p, f: [str(p), f"line {ROW + 1} is not valid JSON"]), JSONL),
    "list-line": (_raw_damage(_replace_row("[1]"), lambda p, f: [str(p), f"line {ROW + 1} holds a JSON list"]), JSONL),
    "int-label-among-text": (_rows_damage(_set_row("label", 3), {}, _at_row), JSONL),
    "null-label": (_rows_damage(_set_row("label", None), {}, _at_row), JSONL),
    "number-as-text": (_rows_damage(_set_row("text", 5), {}, _at_row), JSONL),
    "id-out-of-range": (_rows_damage(_ints, NAMES, lambda p, f: [f"task 'reviews', train row {ROW} ({p} line {ROW + 1})"]), JSONL),
    "json-loader-on-csv": (_raw_damage(lambda clean, fmt: clean.encode(), lambda p, f: [str(p), 'use the dataset type "csv"'], table_fmt="jsonl"), ("csv",)),
    "csv-loader-on-jsonl": (_raw_damage(lambda clean, fmt: clean.encode(), lambda p, f: [str(p), 'use the dataset type "json"'], table_fmt="csv"), JSONL),
    "comma-default-on-tsv": (_raw_damage(lambda clean, fmt: clean.encode(), lambda p, f: [str(p), "set the dataset's delimiter = '\\t'"], table_fmt="csv"), ("tsv",)),
    "semicolons": (_raw_damage(lambda clean, fmt: clean.replace(",", ";").encode(), lambda p, f: [str(p), "delimiter = ';'"]), ("csv",)),
    "field-on-jsonl": (_rows_damage(lambda rows: rows, {"field": "records"}, lambda p, f: [str(p), "has no key 'records'"]), JSONL),
    "json-object-no-field": (_json_document(None), ("json",)),
    "json-object-wrong-field": (_json_document("rows"), ("json",)),
    "glob-matches-nothing": (_path_damage(lambda tmp: str(tmp / "missing" / "*.csv"), lambda tmp: [f"pattern {str(tmp / 'missing' / '*.csv')!r} matches no file"]), ("csv",)),
    "missing-file": (_path_damage(lambda tmp: str(tmp / "nope.csv"), lambda tmp: [f"{str(tmp / 'nope.csv')!r} is not a file"]), ("csv",)),
    "directory": (_path_damage(lambda tmp: str(tmp), lambda tmp: [f"{str(tmp)!r} is a directory"]), ("csv",)),
    "ragged-test-file": (_path_damage(_split_files, lambda tmp: [str(tmp / "test.csv"), "line 8 has 3"]), ("csv",)),
    "unknown-split-name": (_path_damage(lambda tmp: {"valid": str(write("csv", tmp / "d.csv", review_rows()))}, lambda tmp: ["use the split names train and test"]), ("csv",)),
    "hf-builder-bad-json-line": (
        _raw_damage(
            _replace_row('{"text": "x", "label": pos}'),
            lambda p, f: [str(p), f"line {ROW + 1} is not valid JSON"],
            extra={"type": "hf", "path": "json"},
        ),
        JSONL,
    ),
    "parquet-loader-on-csv": (_parquet(cut=False), ("parquet",)),
    "parquet-cut": (_parquet(cut=True), ("parquet",)),
    "unknown-encoding": (_config_damage({"encoding": "latin-99"}, ["tasks.reviews.dataset.encoding: ", "unknown encoding 'latin-99'"]), ("csv",)),
    "unclosed-template": (_config_damage({"templates": {"text": "Review: {text"}}, ["tasks.reviews.dataset.templates: ", "'Review: {text'"]), TEXT),
    "positional-template": (_config_damage({"templates": {"text": "Review: {}"}}, ["tasks.reviews.dataset.templates: ", "positional"]), ("jsonl",)),
    "template-unknown-field": (_config_damage({"templates": {"text": "{title}"}}, ["tasks.reviews.dataset: templates.text: field(s) 'title'"]), ("jsonl",)),
    "rename-unknown-column": (_config_damage({"rename": {"nope": "text"}}, ["tasks.reviews.dataset: rename: column(s) 'nope'"]), ("csv",)),
    "two-character-delimiter": (_config_damage({"delimiter": ";;"}, ["tasks.reviews.dataset.delimiter: "]), ("csv",)),
}


def data_cases() -> list[Case]:
    """Every generated broken-data case."""
    return [_run_case(name, damage, fmt) for name, (damage, formats) in DAMAGES.items() for fmt in formats]
