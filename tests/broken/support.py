"""Tiny data and recipes the broken-input corpus and the run-directory tests start from."""

from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path
from typing import Any

from mtkit.testing import TINY_BERT

WORDS = ["gripping", "dull", "funny", "slow", "warm", "flat", "clever", "tired"]


def review_rows(count: int = 24) -> list[dict[str, Any]]:
    """`count` short reviews, labels alternating neg/pos (so every split has both classes)."""
    return [{"text": f"a {WORDS[i % len(WORDS)]} film, review {i}", "label": "pos" if i % 2 else "neg"} for i in range(count)]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def csv_text(rows: list[dict[str, Any]], delimiter: str = ",") -> str:
    """Rows as CSV (or TSV) text with a header line; values holding the delimiter are quoted."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(rows[0])
    writer.writerows(r.values() for r in rows)
    return out.getvalue()


def tiny_recipe(dataset: dict[str, Any], out: Path, *, steps: int = 2, checkpoint_every: int = 0) -> dict[str, Any]:
    """One classification task on a tiny random BERT with one LoRA adapter; trains in about a second."""
    return copy.deepcopy(
        {
            "run": {
                "name": "tiny",
                "seed": 0,
                "batch_size": 4,
                "eval_batch_size": 8,
                "max_length": 24,
                "checkpoint_every": checkpoint_every,
                "log_every": 1,
                "output_dir": str(out),
            },
            "backbone": dict(TINY_BERT),
            "adapters": {"reviews": {"type": "lora", "rank": 2, "target_modules": ["query", "value"]}},
            "tasks": {"reviews": {"dataset": dataset, "head": {"type": "classification"}, "metrics": ["accuracy"]}},
            "phases": [{"name": "train", "steps": steps, "train": ["adapters", "heads"], "lr": 5e-3}],
        }
    )


def _key(key: str) -> str:
    return key if key and all(c.isalnum() or c in "_-" for c in key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def dump_toml(data: dict[str, Any]) -> str:
    """TOML text for a recipe dict: scalars first, then tables and arrays of tables (items' sub-tables inline)."""
    lines: list[str] = []

    def is_tables(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)

    def table(prefix: str, node: dict[str, Any]) -> None:
        plain = {k: v for k, v in node.items() if not isinstance(v, dict) and not is_tables(v)}
        if prefix and (plain or not node):
            lines.append(f"[{prefix}]")
        lines.extend(f"{_key(k)} = {_value(v)}" for k, v in plain.items())
        for k, v in node.items():
            name = f"{prefix}.{_key(k)}" if prefix else _key(k)
            if isinstance(v, dict):
                table(name, v)
            elif is_tables(v):
                for item in v:
                    lines.append(f"[[{name}]]")
                    lines.extend(f"{_key(ik)} = {_value(iv)}" for ik, iv in item.items())

    table("", data)
    return "\n".join(lines) + "\n"
