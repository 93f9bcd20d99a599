"""Metrics over tag sequences: per-word accuracy and strict BIO entity F1."""

from __future__ import annotations

import pytest
from mtkit_metrics.config import EntityF1MetricConfig, TokenAccuracyMetricConfig
from mtkit_metrics.sequence import EntityF1Metric, TokenAccuracyMetric, entity_spans


def test_token_accuracy_counts_words_not_sequences() -> None:
    metric = TokenAccuracyMetric(TokenAccuracyMetricConfig())
    assert metric.compute([["O", "B-PER"], ["O"]], [["O", "O"], ["O"]]) == {"token_accuracy": pytest.approx(2 / 3)}


def test_entity_spans_are_strict_bio() -> None:
    assert entity_spans(["B-PER", "I-PER", "O", "B-LOC"]) == {("PER", 0, 1), ("LOC", 3, 3)}
    assert entity_spans(["I-PER", "B-ORG", "I-LOC"]) == {("ORG", 1, 1)}  # stray I- tags start nothing


def test_entity_f1_scores_exact_span_matches() -> None:
    metric = EntityF1Metric(EntityF1MetricConfig())
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    assert metric.compute(gold, gold)["entity_f1"] == 1.0
    scores = metric.compute([["B-PER", "O", "O", "B-LOC"]], gold)  # PER cut short: wrong span
    assert scores["entity_f1_precision"] == 0.5 and scores["entity_f1_recall"] == 0.5 and scores["entity_f1"] == 0.5
