"""Metrics over label sequences (token classification): per-word accuracy and entity-span F1."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mtkit import Metric

from .config import EntityF1MetricConfig, TokenAccuracyMetricConfig


class TokenAccuracyMetric(Metric):
    """Share of words whose predicted tag equals the gold tag, over all words (for label sequences)."""

    name = "token_accuracy"
    config_class = TokenAccuracyMetricConfig

    def compute(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        correct = total = 0
        for predicted, gold in zip(predictions, references, strict=True):
            assert len(predicted) == len(gold), "one predicted tag per gold tag"
            correct += sum(p == g for p, g in zip(predicted, gold, strict=True))
            total += len(gold)
        return {"token_accuracy": correct / total if total else 0.0}


def entity_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """(type, first, last) spans of BIO tags; an I-X that does not continue an X span is not an entity (strict)."""
    spans: set[tuple[str, int, int]] = set()
    current: tuple[str, int] | None = None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, kind = tag.partition("-")
        if current is not None and not (prefix == "I" and kind == current[0]):
            spans.add((current[0], current[1], i - 1))
            current = None
        if prefix == "B":
            current = (kind, i)
    return spans


class EntityF1Metric(Metric):
    """Micro F1 over entity spans decoded from BIO tag sequences (B-X starts, I-X continues; seqeval-style, strict)."""

    name = "entity_f1"
    config_class = EntityF1MetricConfig

    def compute(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        found = gold = hit = 0
        for predicted, reference in zip(predictions, references, strict=True):
            p, g = entity_spans(predicted), entity_spans(reference)
            found, gold, hit = found + len(p), gold + len(g), hit + len(p & g)
        precision = hit / found if found else 0.0
        recall = hit / gold if gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"entity_f1": f1, "entity_f1_precision": precision, "entity_f1_recall": recall}
