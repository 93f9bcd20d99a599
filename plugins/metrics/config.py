"""Configs of the built-in metrics (pydantic only, so listing never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from mtkit import ComponentConfig


class AccuracyMetricConfig(ComponentConfig):
    """Share of predictions equal to their reference."""


class MacroF1MetricConfig(ComponentConfig):
    """F1 per class, averaged over the classes seen in references or predictions."""


class TokenAccuracyMetricConfig(ComponentConfig):
    """Share of words whose predicted tag equals the gold tag, over all words (for label sequences)."""


class EntityF1MetricConfig(ComponentConfig):
    """Micro F1 over entity spans decoded from BIO tag sequences (B-X starts, I-X continues; seqeval-style, strict)."""

class ExactMatchMetricConfig(ComponentConfig):
    """Share of predictions equal to their reference after SQuAD normalisation (lowercase, no punctuation/articles)."""


class TokenF1MetricConfig(ComponentConfig):
    """Mean token-overlap F1 between prediction and reference after SQuAD normalisation."""


class BleuMetricConfig(ComponentConfig):
    """Corpus BLEU (sacrebleu, 0-100)."""

    tokenize: str | None = Field(
        default=None, description="sacrebleu tokenizer ('13a', 'intl', 'zh', 'char'...); default sacrebleu's own."
    )
    lowercase: bool = Field(default=False, description="Compare lowercased text.")


class ChrfMetricConfig(ComponentConfig):
    """Corpus chrF (sacrebleu, 0-100); word_order = 2 gives chrF++."""

    word_order: int = Field(default=0, ge=0, le=2, description="Word n-gram order added to the character n-grams (2 = chrF++).")


class RougeMetricConfig(ComponentConfig):
    """Mean ROUGE F-measures (rouge-score): rouge1, rouge2, rougeL (0-1)."""

    rouge_types: list[Literal["rouge1", "rouge2", "rougeL", "rougeLsum"]] = Field(
        default_factory=lambda: ["rouge1", "rouge2", "rougeL"], min_length=1, description="ROUGE variants to report."
    )
    use_stemmer: bool = Field(default=True, description="Porter-stem words before matching (rouge-score's option).")


class PassAtKMetricConfig(ComponentConfig):
    """pass@k of generated Python: each program runs in a subprocess with a timeout and no network (opt-in).

    References are dicts with `prompt`, `test` and `entry_point` (the lm head's reference_fields);
    the program run is prompt + completion + test + `check(entry_point)`.
    """

    allow_code_execution: bool = Field(
        default=False, description="Must be true: running model-written code is unsafe, so this metric is opt-in."
    )
    k: list[int] = Field(
        default_factory=lambda: [1], min_length=1, description="The k values to report (each <= samples per problem)."
    )
    timeout: float = Field(default=5.0, gt=0, le=300, description="Seconds a program may run before it counts as failed.")
    memory_mb: int = Field(default=1024, ge=64, description="Address-space limit of each program (MiB).")
    workers: int = Field(default=2, ge=1, le=64, description="Programs run at the same time.")

    @field_validator("k")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(k < 1 for k in values):
            raise ValueError("every k must be >= 1")
        return values
