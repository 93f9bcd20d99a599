"""Generic loaders: any `datasets.load_dataset` spec, and local csv / json / parquet files.

Every loader then applies the same mapping: rename source columns to the fields the head reads,
format template fields from other fields, and turn string labels into ids.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import datasets
from mtkit import DatasetSource, MtkitError

from ._files import check_csv_columns, check_json_files, explain, innermost, locate, resolve
from .config import (
    CsvDatasetConfig,
    FileDatasetConfig,
    HfDatasetConfig,
    JsonDatasetConfig,
    MappedDatasetConfig,
    ParquetDatasetConfig,
)

RowLocator = Callable[[str, int], "str | None"]
"""(split, 0-based row) -> where that row sits in its file (`reviews.csv line 5`), or None."""


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


def apply_templates(
    split: datasets.Dataset, templates: Mapping[str, str], split_name: str, locate_row: RowLocator | None = None
) -> datasets.Dataset:
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
                    raise MtkitError(
                        f"templates.{name}, {_row(split_name, index, locate_row)}: cannot format {template!r} ({_first_line(exc)})"
                    ) from None
            out[name] = values
        return out

    return split.map(format_rows, batched=True, with_indices=True, desc="formatting templates") if templates else split


def _row(split_name: str, row: int, locate_row: RowLocator | None) -> str:
    where = locate_row(split_name, row) if locate_row else None
    return f"{split_name} row {row}" + (f" ({where})" if where else "")


def _flat(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _check_label_values(values: dict[str, list[Any]], field: str, locate_row: RowLocator | None) -> set[type]:
    """Every label present and of one kind (text, or integer ids); returns the kinds found."""
    kinds: set[type] = set()
    for split_name, column in values.items():
        for row, value in enumerate(column):
            items = _flat(value)
            if value is None or any(x is None or x == "" for x in items):
                raise MtkitError(
                    f"{_row(split_name, row, locate_row)}: the label in field {field!r} is empty (a blank row or a missing "
                    "value); fill it in or remove the row"
                )
            kinds |= {type(x) for x in items}
    if str in kinds and len(kinds) > 1:
        for split_name, column in values.items():
            for row, value in enumerate(column):
                other = next((x for x in _flat(value) if not isinstance(x, str)), None)
                if other is not None:
                    texts = sorted({x for c in values.values() for v in c for x in _flat(v) if isinstance(x, str)})
                    raise MtkitError(
                        f"{_row(split_name, row, locate_row)}: label {other!r} in field {field!r} is not text, "
                        f"where other rows hold text labels ({', '.join(map(repr, texts[:5]))}); write every label as text"
                    )
    return kinds


def map_labels(
    splits: dict[str, datasets.Dataset], field: str | None, given: list[str] | None, locate_row: RowLocator | None = None
) -> tuple[dict[str, datasets.Dataset], list[str] | None]:
    """String labels (or lists of them) -> ids in `given` order (default: sorted distinct strings); names by id.

    Rows are named as `<split> row N`, N counted from 0 in the order the files give them (before any
    held-out split or shuffle), with the file and line where `locate_row` knows them.
    """
    if not field:
        return splits, given
    lacking = next((n for n, s in splits.items() if field not in s.column_names), None)
    if lacking is not None:
        if given is not None:
            raise MtkitError(
                f"label_names is set but the {lacking} split has no field {field!r} (fields: {', '.join(splits[lacking].column_names)}); "
                f"rename the label column with dataset.rename = {{<column> = {field!r}}}, or set dataset.label_field"
            )
        return splits, given  # no labels here (a generation task); a head that needs them says so
    feature = next(iter(splits.values())).features[field]
    if isinstance(feature, datasets.ClassLabel):
        if given is not None and len(given) != feature.num_classes:
            raise MtkitError(f"label_names has {len(given)} names but column {field!r} has {feature.num_classes} classes ({feature.names})")
        return splits, given or list(feature.names)
    values = {name: s[field] for name, s in splits.items()}
    kinds = _check_label_values(values, field, locate_row)
    is_list = any(isinstance(v, list) for column in values.values() for v in column)
    if kinds != {str}:
        names = given
        if names is not None and kinds <= {int} and all(0 <= x < len(names) for c in values.values() for v in c for x in _flat(v)):
            # ClassLabel makes the held-out split stratified; out-of-range ids stay ints so the head names the row.
            if not is_list:
                splits = {n: s.cast_column(field, datasets.ClassLabel(names=names)) for n, s in splits.items()}
        return splits, names
    names = given or sorted({x for column in values.values() for v in column for x in _flat(v)})
    if len(names) == 1:  # a classifier of one class reaches loss 0 and accuracy 1.0 and learns nothing
        raise MtkitError(
            f"field {field!r} holds the same label {names[0]!r} in every row: a task needs two classes or more; "
            "check the data and dataset.rename, or set dataset.label_names to every class"
        )
    ids = {name: i for i, name in enumerate(names)}
    for split_name, column in values.items():
        for row, value in enumerate(column):
            bad = next((x for x in _flat(value) if x not in ids), None)
            if bad is not None:
                raise MtkitError(
                    f"{_row(split_name, row, locate_row)}: label {bad!r} in field {field!r} is not one of label_names "
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

    def row_location(self, split: str, row: int) -> str | None:
        """Where row `row` (0-based, before any held-out split) of loaded split `split` sits in its file, if known."""
        return None

    def load(self) -> datasets.DatasetDict:
        splits = self.read()
        splits = {n: rename_columns(s, self.config.rename, n) for n, s in splits.items()}
        splits = {n: apply_templates(s, self.config.templates, n, self.row_location) for n, s in splits.items()}
        splits, self._label_names = map_labels(splits, self.config.label_field, self.config.label_names, self.row_location)
        return datasets.DatasetDict(splits)

    @property
    def label_names(self) -> list[str] | None:
        return list(self._label_names) if self._label_names is not None else None


def _load(where: str, explain_failure: Callable[[BaseException], str] | None = None, **kwargs: Any) -> datasets.Dataset:
    """`datasets.load_dataset(**kwargs)`; a failure becomes one MtkitError, explained from the files where possible."""
    # The builders log "Failed to read file ..." before raising; the MtkitError below says it once, with the fix.
    builders = logging.getLogger("datasets.packaged_modules")
    level = builders.level
    builders.setLevel(logging.CRITICAL)
    try:
        loaded: datasets.Dataset = datasets.load_dataset(**{k: v for k, v in kwargs.items() if v is not None})
        return loaded
    except FileNotFoundError as exc:
        raise MtkitError(f"{where}: not found ({_first_line(exc)}); check the path, or the hub id when online") from None
    except Exception as exc:  # noqa: BLE001 - a malformed file can make the builders raise anything (StopIteration on an empty JSON file)
        if isinstance(exc, ValueError) and "corresponds to no data" in str(exc):
            # datasets refuses to build an empty split; say which one, in the recipe's terms.
            raise MtkitError(f"{where}: the {kwargs.get('split')!r} split is empty (no rows); check its files, or its slice") from None
        if explain_failure is not None:
            raise MtkitError(explain_failure(exc)) from None
        raise MtkitError(f"{where}: could not be loaded ({innermost(exc)})") from None
    finally:
        builders.setLevel(level)


def _patterns(files: str | list[str] | dict[str, str | list[str]]) -> dict[str, list[str]]:
    """data_files as {split: [patterns]} (a bare file or list is the train split)."""
    if not isinstance(files, dict):
        files = {"train": files}
    return {split: [value] if isinstance(value, str) else list(value) for split, value in files.items()}


class HfDataset(MappedDataset):
    """Any `datasets.load_dataset` spec: a hub dataset, a local folder or a builder (csv, json, parquet...)."""

    name = "hf"
    config_class = HfDatasetConfig
    config: HfDatasetConfig

    def read(self) -> dict[str, datasets.Dataset]:
        cfg = self.config
        spec = {"path": cfg.path, "name": cfg.name, "data_files": cfg.data_files, "data_dir": cfg.data_dir, "revision": cfg.revision}
        where = f"path {cfg.path!r}" + (f" (name {cfg.name!r})" if cfg.name else "")
        splits = {"train": _load(where, self._explainer(), split=cfg.split, **spec)}
        if cfg.test_split is not None:
            splits["test"] = _load(where, self._explainer(), split=cfg.test_split, **spec)
        return splits

    def _explainer(self) -> Callable[[BaseException], str] | None:
        """For a builder spec over local files (path = csv/json/parquet), explain failures from the files."""
        cfg = self.config
        if cfg.path not in ("csv", "json", "parquet") or cfg.data_files is None:
            return None
        try:
            files = [f for patterns in _patterns(cfg.data_files).values() for f in resolve(patterns)]
        except MtkitError:
            return None  # remote or missing files: datasets' own error says more
        return lambda exc: explain(exc, cfg.path, files, {})


class _FileDataset(MappedDataset):
    builder: str
    config: FileDatasetConfig

    def __init__(self, config: FileDatasetConfig) -> None:
        super().__init__(config)
        self._files: dict[str, list[Path]] = {}

    def options(self) -> dict[str, Any]:
        return {}

    def check_loaded(self, files: list[Path], split: datasets.Dataset) -> None:
        """Problems a file can have although it loaded (a CSV split on the wrong character)."""

    def read(self) -> dict[str, datasets.Dataset]:
        patterns = _patterns(self.config.data_files)
        unknown = sorted(set(patterns) - {"train", "test"})
        if unknown or "train" not in patterns:
            raise MtkitError(f"data_files: use the split names train and test (got {', '.join(sorted(patterns))})")
        self._files = {name: resolve(p) for name, p in patterns.items()}
        options = self.options()
        out = {}
        for name, files in self._files.items():
            listed = [str(f) for f in files]
            # One split per load: a broken test file must not be blamed on, or read with, the train split.
            split = _load(
                f"data_files {listed!r}",
                partial(explain, builder=self.builder, files=files, options=options),
                path=self.builder,
                data_files={name: listed},
                split=name,
                **options,
            )
            self.check_loaded(files, split)
            out[name] = split
        return out

    def row_location(self, split: str, row: int) -> str | None:
        return locate(self.builder, self._files.get(split, []), row, self.options())


class CsvDataset(_FileDataset):
    """CSV (or TSV, or compressed .csv.bz2/.gz) files through `datasets`' csv builder."""

    name = "csv"
    config_class = CsvDatasetConfig
    builder = "csv"
    config: CsvDatasetConfig

    def options(self) -> dict[str, Any]:
        return {"delimiter": self.config.delimiter, "encoding": self.config.encoding}

    def check_loaded(self, files: list[Path], split: datasets.Dataset) -> None:
        check_csv_columns(files, split.column_names, self.config.delimiter, self.config.encoding)


class JsonDataset(_FileDataset):
    """JSON Lines or JSON files through `datasets`' json builder."""

    name = "json"
    config_class = JsonDatasetConfig
    builder = "json"
    config: JsonDatasetConfig

    def options(self) -> dict[str, Any]:
        return {"field": self.config.field, "encoding": self.config.encoding}

    def check_loaded(self, files: list[Path], split: datasets.Dataset) -> None:
        check_json_files(files, len(split), self.config.field, self.config.encoding)


class ParquetDataset(_FileDataset):
    """Parquet files through `datasets`' parquet builder."""

    name = "parquet"
    config_class = ParquetDatasetConfig
    builder = "parquet"
