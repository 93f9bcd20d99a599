"""Bootstrap intervals over held-out examples: the scores stay the metrics' own, the resamples are seeded, and the
tables that show them fit 80 columns whatever metrics the tasks have."""

from __future__ import annotations

import io

import numpy as np
import pytest
from mtkit_metrics.classification import AccuracyMetric, MacroF1Metric
from mtkit_metrics.config import AccuracyMetricConfig, BleuMetricConfig, ChrfMetricConfig, MacroF1MetricConfig, RougeMetricConfig
from mtkit_metrics.text import BleuMetric, ChrfMetric, RougeMetric
from rich.console import Console

from mtkit.rundir.intervals import paired_differences, resample_indices, scores_and_intervals

REFERENCES = [
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void.",
    "And God said, Let there be light: and there was light.",
    "And God saw the light, that it was good.",
    "And the evening and the morning were the first day.",
    "The grass withereth, the flower fadeth.",
]
PREDICTIONS = [
    "In the beginning God made the heaven and the earth.",
    "The earth was empty.",
    "And God said, Let there be light: and there was light.",
    "God saw that the light was good.",
    "Evening came, then morning: the first day.",
    "The flower fades.",
]


@pytest.mark.parametrize("metric", [BleuMetric(BleuMetricConfig()), ChrfMetric(ChrfMetricConfig())], ids=["bleu", "chrf"])
def test_sacrebleu_resampler_scores_are_sacrebleus_corpus_scores(metric: BleuMetric | ChrfMetric) -> None:
    resampler = metric.resampler(PREDICTIONS, REFERENCES)
    assert resampler(range(6)) == pytest.approx(metric.compute(PREDICTIONS, REFERENCES), abs=1e-9)
    picked = [0, 0, 3, 5, 5, 5]
    again = metric.compute([PREDICTIONS[i] for i in picked], [REFERENCES[i] for i in picked])
    assert resampler(picked) == pytest.approx(again, abs=1e-9)


def test_intervals_are_percentiles_of_the_seeded_resamples() -> None:
    rouge = RougeMetric(RougeMetricConfig())
    scores, intervals = scores_and_intervals([rouge], PREDICTIONS, REFERENCES, resamples=200, seed=7)
    assert scores == pytest.approx(rouge.compute(PREDICTIONS, REFERENCES))
    # The reference computation: rouge-score's per-example F-measures, averaged over the same resamples by hand.
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    per_example = np.array([scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(PREDICTIONS, REFERENCES, strict=True)])
    draws = per_example[resample_indices(6, 200, 7)].mean(axis=1)
    assert intervals["rougeL"] == pytest.approx(list(np.percentile(draws, [2.5, 97.5])))
    assert intervals["rougeL"][0] < scores["rougeL"] < intervals["rougeL"][1]
    assert scores_and_intervals([rouge], PREDICTIONS, REFERENCES, resamples=200, seed=7)[1] == intervals
    assert scores_and_intervals([rouge], PREDICTIONS, REFERENCES, resamples=200, seed=8)[1] != intervals


def test_intervals_of_a_metric_without_resampler_recompute_it() -> None:
    predictions, references = ["a", "b", "a", "a", "b", "c"], ["a", "b", "b", "a", "c", "c"]
    scores, intervals = scores_and_intervals(
        [MacroF1Metric(MacroF1MetricConfig()), AccuracyMetric(AccuracyMetricConfig())], predictions, references, resamples=100, seed=0
    )
    assert set(intervals) == {"macro_f1", "accuracy"} and scores["accuracy"] == pytest.approx(4 / 6)
    assert all(low <= scores[name] <= high for name, (low, high) in intervals.items())
    assert scores_and_intervals([AccuracyMetric(AccuracyMetricConfig())], ["a"], ["a"], resamples=100)[1] == {}  # one example


def test_paired_differences_resample_both_predictions_with_the_same_examples() -> None:
    rouge = RougeMetric(RougeMetricConfig())
    worse = ["the"] * 6
    paired = paired_differences([rouge], PREDICTIONS, worse, REFERENCES, resamples=200, seed=7)
    # The reference computation: per-example F-measures of both, their difference averaged over the same resamples.
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)

    def per_example(predictions: list[str]) -> np.ndarray:
        return np.array([scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, REFERENCES, strict=True)])

    gap = per_example(PREDICTIONS) - per_example(worse)
    assert paired["rougeL"]["difference"] == pytest.approx(gap.mean())
    draws = gap[resample_indices(6, 200, 7)].mean(axis=1)
    assert paired["rougeL"]["interval"] == pytest.approx(list(np.percentile(draws, [2.5, 97.5])))
    assert paired["rougeL"]["interval"][0] > 0  # better on every example: the interval excludes 0
    # The same predictions on both sides differ by exactly 0 in every resample.
    same = paired_differences([rouge], PREDICTIONS, PREDICTIONS, REFERENCES, resamples=50, seed=0)
    assert all(d["difference"] == 0 and d["interval"] == [0.0, 0.0] for d in same.values())
    # A metric without a resampler (macro F1) is computed on each resample for both; one example gives no interval.
    f1 = paired_differences([MacroF1Metric(MacroF1MetricConfig())], ["a", "b", "c"], ["a", "a", "a"], ["a", "b", "c"], resamples=100)
    assert f1["macro_f1"]["difference"] == pytest.approx(1 - 1 / 6) and f1["macro_f1"]["interval"][1] <= 1
    assert paired_differences([rouge], ["a"], ["b"], ["a"], resamples=100) == {}


def _width(renderable: object) -> int:
    console = Console(width=80, file=io.StringIO(), record=True)
    console.print(renderable)
    text = console.export_text()
    assert "…" not in text, text  # nothing cut
    return max(len(line) for line in text.splitlines())


def test_score_tables_fit_80_columns_with_nine_metrics_over_five_tasks() -> None:
    from mtkit.cli.app import comparison_table, score_table

    metrics = {
        "sentiment": ["exact_match"], "qa": ["exact_match", "token_f1"], "headline": ["rouge1", "rouge2", "rougeL"],
        "code": ["pass_at_1"], "translate": ["bleu", "chrf"],
    }
    scores = {task: {m: 12.3456 if m in {"bleu", "chrf"} else 0.4321 for m in names} for task, names in metrics.items()}
    intervals = {task: {m: [v - 0.1, v + 0.1] for m, v in values.items()} for task, values in scores.items()}
    assert _width(score_table(scores, "joint (learned routing)", intervals=intervals)) <= 80
    by_routing = {"base": scores, "oracle": scores, "learned": scores}
    assert _width(comparison_table(by_routing, dict.fromkeys(by_routing, intervals), "joint")) <= 80
