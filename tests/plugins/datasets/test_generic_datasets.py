"""Generic loaders (hf, csv, json, parquet): renaming, templates, label handling, and their errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest
from mtkit_datasets.config import CsvDatasetConfig, HfDatasetConfig, JsonDatasetConfig, ParquetDatasetConfig
from mtkit_datasets.generic import CsvDataset, HfDataset, JsonDataset, ParquetDataset

from mtkit import MtkitError

ROWS = [
    {"review": "great film", "stars": "pos", "year": 2001},
    {"review": "dull plot", "stars": "neg", "year": 2002},
    {"review": "loved it", "stars": "pos", "year": 2003},
]


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_csv_dataset_renames_templates_and_maps_string_labels(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    datasets.Dataset.from_list(ROWS).to_csv(str(path), index=False)
    source = CsvDataset(CsvDatasetConfig(data_files=str(path), rename={"review": "text", "stars": "label"}, templates={"prompt": "Review ({year}): {text}"}))
    train = source.load()["train"]
    assert source.label_names == ["neg", "pos"]  # sorted distinct strings
    assert train["label"] == [1, 0, 1] and isinstance(train.features["label"], datasets.ClassLabel)
    assert train["prompt"][1] == "Review (2002): dull plot" and train["text"][0] == "great film"


def test_json_dataset_uses_given_label_order_and_test_split(tmp_path: Path) -> None:
    train, test = _jsonl(tmp_path / "train.jsonl", ROWS), _jsonl(tmp_path / "test.jsonl", ROWS[:1])
    source = JsonDataset(JsonDatasetConfig(data_files={"train": str(train), "test": str(test)}, rename={"stars": "label"}, label_names=["pos", "neg"]))
    loaded = source.load()
    assert set(loaded) == {"train", "test"} and loaded["train"]["label"] == [0, 1, 0] and loaded["test"]["label"] == [0]
    assert source.label_names == ["pos", "neg"]


def test_json_dataset_maps_lists_of_string_tags(tmp_path: Path) -> None:
    rows = [{"tokens": ["Ana", "runs"], "tags": ["B-PER", "O"]}, {"tokens": ["Oslo"], "tags": ["B-LOC"]}]
    source = JsonDataset(JsonDatasetConfig(data_files=str(_jsonl(tmp_path / "t.jsonl", rows)), label_field="tags"))
    loaded = source.load()["train"]
    assert source.label_names == ["B-LOC", "B-PER", "O"] and loaded["tags"] == [[1, 2], [0]]


def test_parquet_dataset_keeps_integer_labels_with_names(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    datasets.Dataset.from_list([{"text": "a", "label": 0}, {"text": "b", "label": 1}]).to_parquet(str(path))
    source = ParquetDataset(ParquetDatasetConfig(data_files=str(path), label_names=["no", "yes"]))
    loaded = source.load()["train"]
    assert loaded.features["label"].names == ["no", "yes"] and source.label_names == ["no", "yes"]


def test_hf_dataset_reads_a_builder_spec_with_split_slices(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", ROWS)
    source = HfDataset(HfDatasetConfig(path="json", data_files=str(path), split="train[:2]", test_split="train[2:]", rename={"stars": "label"}))
    loaded = source.load()
    assert len(loaded["train"]) == 2 and len(loaded["test"]) == 1 and source.label_names == ["neg", "pos"]


def test_hf_dataset_without_labels_leaves_fields_alone(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{"q": "2+2?", "a": "4"}])
    source = HfDataset(HfDatasetConfig(path="json", data_files=str(path), label_field=None, templates={"prompt": "Q: {q}\nA:", "target": "{a}"}))
    row = source.load()["train"][0]
    assert row["prompt"] == "Q: 2+2?\nA:" and row["target"] == "4" and source.label_names is None


def test_dataset_errors_name_the_column_row_and_fix(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", ROWS)
    with pytest.raises(MtkitError, match=r"rename: column\(s\) 'missing' not in the train split \(columns: review, stars, year\)"):
        JsonDataset(JsonDatasetConfig(data_files=str(path), rename={"missing": "text"})).load()
    with pytest.raises(MtkitError, match=r"templates.prompt: field\(s\) 'title' not in the train split"):
        JsonDataset(JsonDatasetConfig(data_files=str(path), templates={"prompt": "{title}"})).load()
    with pytest.raises(MtkitError, match=r"train row 1 \(.*d.jsonl line 2\): label 'neg' in field 'label' is not one of label_names \('pos', 'meh'\)"):
        JsonDataset(JsonDatasetConfig(data_files=str(path), rename={"stars": "label"}, label_names=["pos", "meh"])).load()
    with pytest.raises(MtkitError, match=r"data_files: '.*nope.csv' is not a file"):
        CsvDataset(CsvDatasetConfig(data_files=str(tmp_path / "nope.csv"))).load()
    with pytest.raises(MtkitError, match="use the split names train and test"):
        CsvDataset(CsvDatasetConfig(data_files={"validation": str(path)})).load()
    with pytest.raises(MtkitError, match="path '/no/such/dataset/dir'"):
        HfDataset(HfDatasetConfig(path="/no/such/dataset/dir")).load()
