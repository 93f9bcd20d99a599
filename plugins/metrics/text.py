"""Metrics over generated text: SQuAD exact match / token F1, sacrebleu BLEU / chrF, rouge-score ROUGE."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

from mtkit import Metric

from .config import BleuMetricConfig, ChrfMetricConfig, ExactMatchMetricConfig, RougeMetricConfig, TokenF1MetricConfig


def as_text(value: Any) -> str:
    """A prediction or reference as text: dict references carry it under 'target', sample lists give their first."""
    if isinstance(value, dict):
        value = value["target"]
    if isinstance(value, list | tuple):
        value = value[0] if value else ""
    return str(value)


def texts(predictions: Sequence[Any], references: Sequence[Any]) -> tuple[list[str], list[str]]:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    return [as_text(p) for p in predictions], [as_text(r) for r in references]


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lowercase, drop punctuation and articles, squeeze whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)  # both empty: a match; one empty: none
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


class ExactMatchMetric(Metric):
    """Share of predictions equal to their reference after SQuAD normalisation."""

    name = "exact_match"
    config_class = ExactMatchMetricConfig

    def compute(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        preds, refs = texts(predictions, references)
        hits = sum(normalize_answer(p) == normalize_answer(r) for p, r in zip(preds, refs, strict=True))
        return {"exact_match": hits / len(refs) if refs else 0.0}


class TokenF1Metric(Metric):
    """Mean SQuAD token F1."""

    name = "token_f1"
    config_class = TokenF1MetricConfig

    def compute(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        preds, refs = texts(predictions, references)
        scores = [token_f1(p, r) for p, r in zip(preds, refs, strict=True)]
        return {"token_f1": sum(scores) / len(scores) if scores else 0.0}


class BleuMetric(Metric):
    """Corpus BLEU from sacrebleu (0-100)."""

    name = "bleu"
    config_class = BleuMetricConfig
    config: BleuMetricConfig

    def compute(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        from sacrebleu.metrics import BLEU

        preds, refs = texts(predictions, references)
        options: dict[str, Any] = {"lowercase": self.config.lowercase}
        if self.config.tokenize is not None:
            options["tokenize"] = self.config.tokenize
        return {"bleu": float(BLEU(**options).corpus_score(preds, [refs]).score)}


class ChrfMetric(Metric):
    """Corpus chrF from sacrebleu (0-100)."""

    name = "chrf"
    config_class = ChrfMetricConfig
    config: ChrfMetricConfig

    def compute(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        from sacrebleu.metrics import CHRF

        preds, refs = texts(predictions, references)
        return {"chrf": float(CHRF(word_order=self.config.word_order).corpus_score(preds, [refs]).score)}


class RougeMetric(Metric):
    """Mean ROUGE F-measures from rouge-score, one score per configured type."""

    name = "rouge"
    config_class = RougeMetricConfig
    config: RougeMetricConfig

    def compute(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        from rouge_score import rouge_scorer

        preds, refs = texts(predictions, references)
        scorer = rouge_scorer.RougeScorer(list(self.config.rouge_types), use_stemmer=self.config.use_stemmer)
        totals = dict.fromkeys(self.config.rouge_types, 0.0)
        for p, r in zip(preds, refs, strict=True):
            for kind, score in scorer.score(r, p).items():  # score(target, prediction)
                totals[kind] += score.fmeasure
        n = max(len(refs), 1)
        return {kind: total / n for kind, total in totals.items()}
