"""Bad task data stops a real run with one message naming the task, the field and the row (run_recipe and the CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mtkit import MtkitError, Registry
from mtkit.train.run import run_recipe
from tests.conftest import ROOT, write_toml
from tests.plugins.components_support import FIXTURES, tiny_recipe_for


def _rows(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _recipe(tmp_path: Path, dataset: dict[str, Any], head: dict[str, Any]) -> Path:
    recipe = tiny_recipe_for({"reviews": {"dataset": dataset, "head": head}})
    recipe["run"]["output_dir"] = str(tmp_path / "run")
    return write_toml(tmp_path / "recipe.toml", recipe)


REVIEWS = [{"review": f"text {i}", "label": i % 2} for i in range(10)]


def test_missing_column_names_task_field_and_row(tmp_path: Path, registry: Registry) -> None:
    path = _recipe(tmp_path, {"type": "json", "data_files": _rows(tmp_path / "d.jsonl", REVIEWS), "label_names": ["neg", "pos"]}, {"type": "classification"})
    with pytest.raises(MtkitError, match=r"task 'reviews', every row \(10 of them\): field 'text' is missing \(fields: label, review\); set head.text_field"):
        run_recipe(path, registry=registry)


def test_label_outside_the_head_classes_names_task_field_and_row(tmp_path: Path, registry: Registry) -> None:
    rows = [dict(r, label=7) if i == 4 else r for i, r in enumerate(REVIEWS)]
    dataset = {"type": "json", "data_files": {"train": _rows(tmp_path / "train.jsonl", rows), "test": _rows(tmp_path / "test.jsonl", REVIEWS[:2])}}
    path = _recipe(tmp_path, dataset | {"rename": {"review": "text"}, "label_names": ["neg", "pos"]}, {"type": "classification"})
    with pytest.raises(MtkitError, match=r"task 'reviews', train row 4 \(.*train.jsonl line 5\): label 7 in field 'label' is outside the head's 2 classes \(0-1\)"):
        run_recipe(path, registry=registry)


def test_token_label_outside_the_head_classes_names_the_word(tmp_path: Path, registry: Registry) -> None:
    rows = [json.loads(line) for line in (FIXTURES / "token_classification.jsonl").read_text().splitlines()[:6]]
    names = ["B-LOC", "B-ORG", "B-PER", "I-ORG", "I-PER", "O"]
    ids = [{"tokens": r["tokens"], "tags": [names.index(t) for t in r["tags"]]} for r in rows]
    ids[3]["tags"][2] = 9
    dataset = {"type": "json", "data_files": {"train": _rows(tmp_path / "train.jsonl", ids), "test": _rows(tmp_path / "test.jsonl", ids[:2])}}
    path = _recipe(tmp_path, dataset | {"label_field": "tags", "label_names": names}, {"type": "token_classification"})
    word = ids[3]["tokens"][2]
    with pytest.raises(MtkitError, match=rf"task 'reviews', train row 3 \(.*train.jsonl line 4\): label 9 of word 2 \('{word}'\) in field 'tags' is outside the head's 6 classes"):
        run_recipe(path, registry=registry)


def test_empty_split_names_task_and_split(tmp_path: Path, registry: Registry) -> None:
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("text,label\n" + "".join(f"review {i},{i % 2}\n" for i in range(10)), encoding="utf-8")
    test.write_text("text,label\n", encoding="utf-8")  # a header and no rows
    dataset = {"type": "csv", "data_files": {"train": str(train), "test": str(test)}, "label_names": ["neg", "pos"]}
    path = _recipe(tmp_path, dataset, {"type": "classification"})
    with pytest.raises(MtkitError, match=r"tasks.reviews.dataset: data_files \[.*test.csv'\]: the 'test' split is empty \(no rows\)"):
        run_recipe(path, registry=registry)


def test_cli_reports_bad_row_without_traceback(tmp_path: Path) -> None:
    path = _recipe(tmp_path, {"type": "json", "data_files": _rows(tmp_path / "d.jsonl", REVIEWS), "label_names": ["neg", "pos"]}, {"type": "classification"})
    result = subprocess.run([sys.executable, "-m", "mtkit", "run", str(path)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 2, result.stderr
    assert f"{path}: task 'reviews', every row (10 of them): field 'text' is missing" in result.stderr
    assert "Traceback" not in result.stderr
