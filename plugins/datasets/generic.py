"""Generic loaders: any `datasets.load_dataset` spec, and local csv / json / parquet files.

Every loader then applies the same mapping: rename source columns to the fields the head reads,
format template fields from other fields, and turn string labels into ids.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets

from mtkit import DatasetSource, MtkitError

from .config import CsvDatasetConfig, FileDatasetConfig, HfDatasetConfig, JsonDatasetConfig, MappedDatasetConfig, ParquetDatasetConfig


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def rename_columns(split: datasets.Dataset, rename: Mapping[str, str], split_name: str) -> datasets.Dataset:
    missing = sorted(set(rename) - set(split.column_names))
    if missing:
        raise MtkitError(
            f"rename: column(s) {', '.join(map(repr, missing))} not in the {split_name} split "
            f"(columns: {', '.join(split.column_names)}); fix the keys of dataset.rename"
        )
    return split.rename_columns(dict(rename)) if rename else split


def apply_templates(split: datasets.Dataset, templates: Mapping[str, str], split_name: str) -> datasets.Dataset:
    """Add each template field, formatted from the row's fields; a missing field names the row."""
    fields = {name: [f for _, f, _, _ in string.Formatter().parse(t) if f] for name, t in templates.items()}
    for name, needed in fields.items():
        unknown = sorted({f.split(".")[0].split("[")[0] for f in needed} - set(split.column_names))
        if unknown:
            raise MtkitError(
                f"templates.{name}: field(s) {', '.join(map(repr, unknown))} not in the {split_name} split "
                f"(fields: {', '.join(split.column_names)}); fix the template or dataset.rename"
            )

    def format_rows(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[str]]:
        rows = [{k: v[i] for k, v in batch.items()} for i in range(len(indices))]
        out: dict[str, list[str]] = {}
        for name, template in templates.items():
            values = []
            for row, index in zip(rows, indices, strict=True):
                try:
                    values.append(template.format_map(row))
                except (KeyError, IndexError, ValueError, AttributeError) as exc:
                    raise MtkitError(f"templates.{name}, {split_name} row {index}: cannot format {template!r} ({_first_line(exc)})") from None
            out[name] = values
        return out

    return split.map(format_rows, batched=True, with_indices=True, desc="formatting templates") if templates else split


def map_labels(
    splits: dict[str, datasets.Dataset], field: str | None, given: list[str] | None
) -> tuple[dict[str, datasets.Dataset], list[str] | None]:
    """String labels (or lists of them) -> ids in `given` order (default: sorted distinct strings); names by id."""
    if not field or any(field not in s.column_names for s in splits.values()):
        return splits, given  # no labels here; a head that needs them reports the missing field per row
    feature = next(iter(splits.values())).features[field]
    if isinstance(feature, datasets.ClassLabel):
        if given is not None and len(given) != feature.num_classes:
            raise MtkitError(f"label_names has {len(given)} names but column {field!r} has {feature.num_classes} classes ({feature.names})")
        return splits, given or list(feature.names)
    values = {name: s[field] for name, s in splits.items()}

    def strings(value: Any) -> list[Any]:
        return value if isinstance(value, list) else [value]

    kinds = {type(x) for column in values.values() for v in column for x in strings(v)}
    is_list = any(isinstance(v, list) for column in values.values() for v in column)
    if kinds != {str}:
        names = given
        if names is not None and kinds <= {int} and all(0 <= x < len(names) for c in values.values() for v in c for x in strings(v)):
            # ClassLabel makes the held-out split stratified; out-of-range ids stay ints so the head names the row.
            if not is_list:
                splits = {n: s.cast_column(field, datasets.ClassLabel(names=names)) for n, s in splits.items()}
        return splits, names
    names = given or sorted({x for column in values.values() for v in column for x in strings(v)})
    ids = {name: i for i, name in enumerate(names)}
    for split_name, column in values.items():
        for row, value in enumerate(column):
            bad = next((x for x in strings(value) if x not in ids), None)
            if bad is not None:
                raise MtkitError(
                    f"{split_name} row {row}: label {bad!r} in field {field!r} is not one of label_names "
                    f"({', '.join(map(repr, names))}); add it to dataset.label_names or fix the data"
                )
    out = {}
    for split_name, split in splits.items():
        mapped = split.map(lambda v: {field: [ids[x] for x in v] if isinstance(v, list) else ids[v]}, input_columns=field, desc="mapping labels")
        if not is_list:
            mapped = mapped.cast_column(field, datasets.ClassLabel(names=names))
        out[split_name] = mapped
    return out, names


class MappedDataset(DatasetSource):
    """Shared by the generic loaders: read raw splits, then rename, template and map labels."""

    config: MappedDatasetConfig

    def __init__(self, config: MappedDatasetConfig) -> None:
        super().__init__(config)
        self._label_names: list[str] | None = config.label_names

    def read(self) -> dict[str, datasets.Dataset]:
        """The raw `train` (and optional `test`) split."""
        raise NotImplementedError

    def load(self) -> datasets.DatasetDict:
        splits = self.read()
        splits = {n: rename_columns(s, self.config.rename, n) for n, s in splits.items()}
        splits = {n: apply_templates(s, self.config.templates, n) for n, s in splits.items()}
        splits, self._label_names = map_labels(splits, self.config.label_field, self.config.label_names)
        return datasets.DatasetDict(splits)

    @property
    def label_names(self) -> list[str] | None:
        return list(self._label_names) if self._label_names is not None else None


def _load(where: str, **kwargs: Any) -> datasets.DatasetDict | datasets.Dataset:
    try:
        return datasets.load_dataset(**{k: v for k, v in kwargs.items() if v is not None})
    except ValueError as exc:
        if "corresponds to no data" not in str(exc):
            raise MtkitError(f"{where}: could not be loaded ({_first_line(exc)})") from None
        # datasets refuses to build an empty split; say which one, in the recipe's terms.
        raise MtkitError(f"{where}: the {kwargs.get('split')!r} split is empty (no rows); check its files, or its slice") from None
    except FileNotFoundError as exc:
        raise MtkitError(f"{where}: not found ({_first_line(exc)}); check the path, or the hub id when online") from None
    except (ValueError, OSError, datasets.exceptions.DatasetNotFoundError) as exc:
        raise MtkitError(f"{where}: could not be loaded ({_first_line(exc)})") from None


class HfDataset(MappedDataset):
    """Any `datasets.load_dataset` spec: a hub dataset, a local folder or a builder (csv, json, parquet...)."""

    name = "hf"
    config_class = HfDatasetConfig
    config: HfDatasetConfig

    def read(self) -> dict[str, datasets.Dataset]:
        cfg = self.config
        spec = {"path": cfg.path, "name": cfg.name, "data_files": cfg.data_files, "data_dir": cfg.data_dir, "revision": cfg.revision}
        where = f"path {cfg.path!r}" + (f" (name {cfg.name!r})" if cfg.name else "")
        splits = {"train": _load(where, split=cfg.split, **spec)}
        if cfg.test_split is not None:
            splits["test"] = _load(where, split=cfg.test_split, **spec)
        return splits  # type: ignore[return-value]


class _FileDataset(MappedDataset):
    builder: str
    config: FileDatasetConfig

    def options(self) -> dict[str, Any]:
        return {}

    def read(self) -> dict[str, datasets.Dataset]:
        files = self.config.data_files
        if isinstance(files, dict):
            unknown = sorted(set(files) - {"train", "test"})
            if unknown or "train" not in files:
                raise MtkitError(f"data_files: use the split names train and test (got {', '.join(sorted(files))})")
        else:
            files = {"train": files}
        for split_files in files.values():
            for file in [split_files] if isinstance(split_files, str) else split_files:
                if not any(ch in file for ch in "*?[") and not Path(file).expanduser().is_file():
                    raise MtkitError(f"data_files: {file!r} is not a file; check the path (relative paths start at the working directory)")
        files = {k: [str(Path(f).expanduser()) for f in ([v] if isinstance(v, str) else v)] for k, v in files.items()}
        return {
            name: _load(f"data_files {files[name]!r}", path=self.builder, data_files=files, split=name, **self.options())  # type: ignore[misc]
            for name in files
        }


class CsvDataset(_FileDataset):
    """CSV (or TSV, or compressed .csv.bz2/.gz) files through `datasets`' csv builder."""

    name = "csv"
    config_class = CsvDatasetConfig
    builder = "csv"
    config: CsvDatasetConfig

    def options(self) -> dict[str, Any]:
        return {"delimiter": self.config.delimiter}


class JsonDataset(_FileDataset):
    """JSON Lines or JSON files through `datasets`' json builder."""

    name = "json"
    config_class = JsonDatasetConfig
    builder = "json"
    config: JsonDatasetConfig

    def options(self) -> dict[str, Any]:
        return {"field": self.config.field}


class ParquetDataset(_FileDataset):
    """Parquet files through `datasets`' parquet builder."""

    name = "parquet"
    config_class = ParquetDatasetConfig
    builder = "parquet"
