"""Text metrics against hand-computed values and the libraries' direct output."""

from __future__ import annotations

import pytest
import sacrebleu
from mtkit_metrics.config import (
    BleuMetricConfig,
    ChrfMetricConfig,
    ExactMatchMetricConfig,
    RougeMetricConfig,
    TokenF1MetricConfig,
)
from mtkit_metrics.text import BleuMetric, ChrfMetric, ExactMatchMetric, RougeMetric, TokenF1Metric, normalize_answer
from rouge_score import rouge_scorer

PREDICTIONS = ["the cat sat on the mat", "Shares fell sharply on Monday", "Au commencement Dieu créa le ciel"]
REFERENCES = ["a cat was sitting on the mat", "Shares fall sharply", "Au commencement, Dieu créa les cieux et la terre."]


def test_exact_match_uses_squad_normalisation() -> None:
    metric = ExactMatchMetric(ExactMatchMetricConfig())
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    scores = metric.compute(["The Eiffel Tower.", "Paris", "an apple"], ["eiffel tower", "London", "Apple!"])
    assert scores == {"exact_match": pytest.approx(2 / 3)}


def test_token_f1_matches_hand_computed_overlap() -> None:
    metric = TokenF1Metric(TokenF1MetricConfig())
    # "cat sat on mat" vs "cat was sitting on mat": 3 common tokens, P = 3/4, R = 3/5.
    f1 = 2 * (3 / 4) * (3 / 5) / (3 / 4 + 3 / 5)
    assert metric.compute([PREDICTIONS[0]], [REFERENCES[0]]) == {"token_f1": pytest.approx(f1)}
    assert metric.compute(["", "x"], ["", "y"]) == {"token_f1": pytest.approx(0.5)}  # both empty = match


def test_bleu_equals_sacrebleu_corpus_score() -> None:
    expected = sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES]).score
    assert BleuMetric(BleuMetricConfig()).compute(PREDICTIONS, REFERENCES) == {"bleu": pytest.approx(expected)}
    assert BleuMetric(BleuMetricConfig()).compute(REFERENCES, REFERENCES) == {"bleu": pytest.approx(100.0)}


def test_chrf_equals_sacrebleu_corpus_score() -> None:
    expected = sacrebleu.corpus_chrf(PREDICTIONS, [REFERENCES]).score
    assert ChrfMetric(ChrfMetricConfig()).compute(PREDICTIONS, REFERENCES) == {"chrf": pytest.approx(expected)}
    plus = sacrebleu.metrics.CHRF(word_order=2).corpus_score(PREDICTIONS, [REFERENCES]).score
    assert ChrfMetric(ChrfMetricConfig(word_order=2)).compute(PREDICTIONS, REFERENCES) == {"chrf": pytest.approx(plus)}


def test_rouge_equals_mean_rouge_score_fmeasure() -> None:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    per = [scorer.score(r, p) for p, r in zip(PREDICTIONS, REFERENCES, strict=True)]
    expected = {k: sum(s[k].fmeasure for s in per) / len(per) for k in ("rouge1", "rouge2", "rougeL")}
    scores = RougeMetric(RougeMetricConfig()).compute(PREDICTIONS, REFERENCES)
    assert scores == pytest.approx(expected)
    assert 0 < scores["rougeL"] < 1


def test_text_metrics_read_dict_references_and_sample_lists() -> None:
    refs = [{"target": r, "extra": 1} for r in REFERENCES]
    samples = [[p, "ignored"] for p in PREDICTIONS]
    assert BleuMetric(BleuMetricConfig()).compute(samples, refs) == BleuMetric(BleuMetricConfig()).compute(
        PREDICTIONS, REFERENCES
    )


def test_text_metrics_reject_length_mismatch() -> None:
    with pytest.raises(ValueError, match="2 predictions but 3 references"):
        RougeMetric(RougeMetricConfig()).compute(PREDICTIONS[:2], REFERENCES)
