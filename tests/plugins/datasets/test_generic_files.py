"""The generic file loaders on damaged files: each failure names the file, the line and the fix; rows are located in their files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest
from mtkit_datasets.config import CsvDatasetConfig, JsonDatasetConfig, ParquetDatasetConfig
from mtkit_datasets.generic import CsvDataset, JsonDataset, ParquetDataset
from pydantic import ValidationError

from mtkit import MtkitError

HEADER = "text,label\n"
ROWS = "".join(f"review {i},{'pos' if i % 2 else 'neg'}\n" for i in range(8))


def _csv(tmp_path: Path, text: str | bytes, name: str = "d.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _load(cls: type, config: type, **params: Any) -> datasets.DatasetDict:
    return cls(config(**params)).load()  # type: ignore[no-any-return]


def test_csv_with_legacy_bytes_names_line_and_encoding_and_the_encoding_option_reads_it(tmp_path: Path) -> None:
    path = _csv(tmp_path, (HEADER + ROWS + "caf\u00e9 noir,pos\n").encode("latin-1"))
    with pytest.raises(MtkitError, match=rf"{path}: line 10 is not utf-8 text \(byte 0xe9 .*encoding = 'latin-1'"):
        _load(CsvDataset, CsvDatasetConfig, data_files=str(path))
    assert _load(CsvDataset, CsvDatasetConfig, data_files=str(path), encoding="latin-1")["train"]["text"][-1] == "caf\u00e9 noir"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"is empty \(no header row\)"),
        ("text\tlabel\n" + ROWS.replace(",", "\t"), r"the header line 'text\\tlabel' is tab-separated, not comma-separated; set the dataset's delimiter = '\\t'"),
        (HEADER + "a,pos\nb,neg\none,two,three\nc\n", r"line 4 has 3 comma-separated fields but the header has 2"),
        ('{"text": "a", "label": "pos"}\n{"text": "b", "label": "neg"}\n', r"looks like JSON, not CSV .*use the dataset type \"json\""),
    ],
    ids=["empty", "tsv-read-as-csv", "ragged-row", "jsonl-read-as-csv"],
)
def test_csv_failures_name_the_file_and_fix(tmp_path: Path, text: str, message: str) -> None:
    path = _csv(tmp_path, text)
    with pytest.raises(MtkitError, match=rf"{path}: {message}"):
        _load(CsvDataset, CsvDatasetConfig, data_files=str(path))


def test_csv_glob_matching_nothing_and_a_directory_are_named(tmp_path: Path) -> None:
    with pytest.raises(MtkitError, match=r"pattern '.*/none/\*.csv' matches no file"):
        _load(CsvDataset, CsvDatasetConfig, data_files=str(tmp_path / "none" / "*.csv"))
    with pytest.raises(MtkitError, match=r"is a directory; name its files"):
        _load(CsvDataset, CsvDatasetConfig, data_files=str(tmp_path))


@pytest.mark.parametrize(
    ("text", "params", "message"),
    [
        ('{"text": "a", "label": "pos"}\n{"text": "b", label: "neg"}\n', {}, r"line 2 is not valid JSON \(Expecting property name"),
        ('{"text": "a", "label": "pos"}\n{"text": "b", "label": "neg"}\n', {"field": "records"}, r"is JSON Lines .*no key 'records'; remove the dataset's field"),
        (HEADER + ROWS, {}, r"is not JSON \(line 1 starts 'text,label'\); use the dataset type \"csv\""),
        (json.dumps({"records": [{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}]}), {}, r"holds one JSON object .*set the dataset's field"),
        (json.dumps({"records": [{"text": "a", "label": "pos"}]}), {"field": "rows"}, r"has no key 'rows' \(keys: 'records'\)"),
        ("", {}, r"is empty"),
    ],
    ids=["malformed-line", "field-on-jsonl", "csv-read-as-json", "object-without-field", "wrong-field", "empty"],
)
def test_json_failures_name_the_file_line_and_fix(tmp_path: Path, text: str, params: dict[str, Any], message: str) -> None:
    path = _csv(tmp_path, text, "d.jsonl")
    with pytest.raises(MtkitError, match=rf"{path}: {message}"):
        _load(JsonDataset, JsonDatasetConfig, data_files=str(path), **params)


def test_parquet_loader_on_a_csv_file_names_the_right_type(tmp_path: Path) -> None:
    path = _csv(tmp_path, HEADER + ROWS)
    with pytest.raises(MtkitError, match=rf"{path}: is not a readable Parquet file .*use the dataset type 'csv'"):
        _load(ParquetDataset, ParquetDatasetConfig, data_files=str(path))


@pytest.mark.parametrize("template", ["Review: {text", "Review: text}", "{} and {text}"])
def test_broken_template_is_a_validation_error(template: str) -> None:
    with pytest.raises(ValidationError, match=r"template 'prompt' = .* (is not a valid format string|has a positional placeholder)"):
        JsonDatasetConfig(data_files="d.jsonl", templates={"prompt": template})


def test_label_problems_name_the_file_row_and_line(tmp_path: Path) -> None:
    rows = [{"text": f"r{i}", "label": "pos" if i % 2 else "neg"} for i in range(12)]
    rows[9]["label"] = 4
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows[:5]) + "\n\n" + "".join(json.dumps(r) + "\n" for r in rows[5:]), encoding="utf-8")
    with pytest.raises(MtkitError) as info:  # datasets either refuses the mixed column (then the file is read) or loads it
        _load(JsonDataset, JsonDatasetConfig, data_files=str(path))
    assert str(path) in str(info.value) and "line 11" in str(info.value) and "'label'" in str(info.value), info.value
    one = _csv(tmp_path, HEADER + "a,pos\nb,pos\n")
    with pytest.raises(MtkitError, match=r"field 'label' holds the same label 'pos' in every row: a task needs two classes or more"):
        _load(CsvDataset, CsvDatasetConfig, data_files=str(one))


def test_row_location_follows_quoted_lines_blank_lines_and_files(tmp_path: Path) -> None:
    first = _csv(tmp_path, HEADER + '"two\nlines",pos\n\nb,neg\n', "a.csv")
    second = _csv(tmp_path, HEADER + "c,pos\nd,neg\n", "b.csv")
    source = CsvDataset(CsvDatasetConfig(data_files=[str(first), str(second)]))
    assert source.load()["train"]["text"] == ["two\nlines", "b", "c", "d"]
    assert [source.row_location("train", i) for i in range(4)] == [f"{first} line 2", f"{first} line 5", f"{second} line 2", f"{second} line 3"]
    assert source.row_location("train", 4) is None
    parquet = tmp_path / "p.parquet"
    datasets.Dataset.from_list([{"text": "a", "label": 0}, {"text": "b", "label": 1}]).to_parquet(str(parquet))
    source_pq = ParquetDataset(ParquetDatasetConfig(data_files=[str(parquet), str(parquet)], label_names=["no", "yes"]))
    source_pq.load()
    assert source_pq.row_location("train", 3) == f"{parquet} row 1"
