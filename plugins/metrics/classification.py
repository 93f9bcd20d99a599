"""Metrics over discrete predictions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mtkit import Metric, Resampler, mean_resampler

from .config import AccuracyMetricConfig, MacroF1MetricConfig


class AccuracyMetric(Metric):
    """Share of predictions equal to their reference."""

    name = "accuracy"
    config_class = AccuracyMetricConfig

    def compute(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        return self.resampler(predictions, references)(range(len(predictions)))

    def resampler(self, predictions: Sequence[Any], references: Sequence[Any]) -> Resampler:
        assert len(predictions) == len(references)
        return mean_resampler({"accuracy": [float(p == r) for p, r in zip(predictions, references, strict=True)]})


class MacroF1Metric(Metric):
    """F1 per class, averaged over the classes seen in references or predictions."""

    name = "macro_f1"
    config_class = MacroF1MetricConfig

    def compute(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        classes = sorted(set(references) | set(predictions), key=repr)
        scores = []
        for c in classes:
            tp = sum(p == c and r == c for p, r in zip(predictions, references, strict=True))
            predicted = sum(p == c for p in predictions)
            actual = sum(r == c for r in references)
            scores.append(2 * tp / (predicted + actual) if predicted + actual else 0.0)
        return {"macro_f1": sum(scores) / len(scores) if scores else 0.0}
