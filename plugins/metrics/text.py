"""Metrics over generated text: SQuAD exact match / token F1, sacrebleu BLEU / chrF, rouge-score ROUGE."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

from mtkit import Metric, Resampler, mean_resampler

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
        return self.resampler(predictions, references)(range(len(predictions)))

    def resampler(self, predictions: Sequence[Any], references: Sequence[Any]) -> Resampler:
        preds, refs = texts(predictions, references)
        return mean_resampler({"exact_match": [float(normalize_answer(p) == normalize_answer(r)) for p, r in zip(preds, refs, strict=True)]})


class TokenF1Metric(Metric):
    """Mean SQuAD token F1."""

    name = "token_f1"
    config_class = TokenF1MetricConfig

    def compute(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        return self.resampler(predictions, references)(range(len(predictions)))

    def resampler(self, predictions: Sequence[Any], references: Sequence[Any]) -> Resampler:
        preds, refs = texts(predictions, references)
        return mean_resampler({"token_f1": [token_f1(p, r) for p, r in zip(preds, refs, strict=True)]})


def sacrebleu_resampler(metric: Any, name: str, preds: list[str], refs: list[str]) -> Resampler:
    """Scores of resamples from sacrebleu's per-sentence statistics, summed and scored as sacrebleu's `corpus_score`
    (and its own bootstrap) do, so every resample's score is sacrebleu's."""
    import numpy as np

    stats = np.asarray(metric._extract_corpus_statistics(preds, [refs]), dtype=np.float64)  # (N, S)

    def scores(index: Sequence[int]) -> dict[str, float]:
        return {name: float(metric._compute_score_from_stats(list(stats[list(index)].sum(0))).score)}

    return scores


class BleuMetric(Metric):
    """Corpus BLEU from sacrebleu (0-100)."""

    name = "bleu"
    config_class = BleuMetricConfig
    config: BleuMetricConfig

    def compute(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        preds, refs = texts(predictions, references)
        return {"bleu": float(self._bleu().corpus_score(preds, [refs]).score)}

    def resampler(self, predictions: Sequence[Any], references: Sequence[Any]) -> Resampler:
        return sacrebleu_resampler(self._bleu(), "bleu", *texts(predictions, references))

    def _bleu(self) -> Any:
        from sacrebleu.metrics import BLEU

        options: dict[str, Any] = {"lowercase": self.config.lowercase}
        if self.config.tokenize is not None:
            options["tokenize"] = self.config.tokenize
        return BLEU(**options)


class ChrfMetric(Metric):
    """Corpus chrF from sacrebleu (0-100)."""

    name = "chrf"
    config_class = ChrfMetricConfig
    config: ChrfMetricConfig

    def compute(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        preds, refs = texts(predictions, references)
        return {"chrf": float(self._chrf().corpus_score(preds, [refs]).score)}

    def resampler(self, predictions: Sequence[Any], references: Sequence[Any]) -> Resampler:
        return sacrebleu_resampler(self._chrf(), "chrf", *texts(predictions, references))

    def _chrf(self) -> Any:
        from sacrebleu.metrics import CHRF

        return CHRF(word_order=self.config.word_order)


class RougeMetric(Metric):
    """Mean ROUGE F-measures from rouge-score, one score per configured type."""

    name = "rouge"
    config_class = RougeMetricConfig
    config: RougeMetricConfig

    def compute(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        return self.resampler(predictions, references)(range(len(predictions)))

    def resampler(self, predictions: Sequence[Any], references: Sequence[Any]) -> Resampler:
        from rouge_score import rouge_scorer

        preds, refs = texts(predictions, references)
        scorer = rouge_scorer.RougeScorer(list(self.config.rouge_types), use_stemmer=self.config.use_stemmer)
        scores: dict[str, list[float]] = {kind: [] for kind in self.config.rouge_types}
        for p, r in zip(preds, refs, strict=True):
            for kind, score in scorer.score(r, p).items():  # score(target, prediction)
                scores[kind].append(score.fmeasure)
        return mean_resampler(scores)
