"""Bootstrap confidence intervals over held-out examples (`intervals.json` in the run directory).

The scores themselves stay the metrics' own (sacrebleu's BLEU, rouge-score's ROUGE); only the interval comes from
resampling the evaluated examples with replacement and scoring each resample again. A metric with a resampler
(`Metric.resampler`: per-example scores, or sacrebleu's per-sentence statistics) scores a resample from statistics
computed once; any other (macro F1) is computed again on each resample. Every routing of a task (base, oracle, learned) is resampled with
the same indices, drawn from the run seed and the task's name, so intervals are reproducible and comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mtkit.api.interfaces import Metric
from mtkit.api.seeding import component_seed

__all__ = ["FILE", "LEVEL", "describe", "paired_differences", "resample_indices", "scores_and_intervals", "task_seed"]

FILE = "intervals.json"
LEVEL = 0.95


def resample_indices(size: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, size) indices into the examples, drawn with replacement."""
    return np.random.default_rng(seed).integers(0, size, size=(resamples, size))


def scores_and_intervals(
    metrics: Sequence[Metric],
    predictions: Sequence[Any],
    references: Sequence[Any],
    *,
    resamples: int = 0,
    seed: int = 0,
    level: float = LEVEL,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Every metric's scores and, with `resamples`, each score's percentile bootstrap interval [low, high] at `level`.

    A metric with a resampler (`Metric.resampler`) scores its examples once and every resample from those
    statistics; any other is computed on the examples and then on each resample. `seed` draws the resamples.
    """
    scores: dict[str, float] = {}
    intervals: dict[str, list[float]] = {}
    bootstrap = resamples > 0 and len(predictions) > 1
    index = resample_indices(len(predictions), resamples, seed).tolist() if bootstrap else []
    tails = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    for metric in metrics:
        whole, *rows = _per_resample(metric, predictions, references, index)
        scores.update(whole)
        for name in whole if rows else ():
            low, high = np.percentile([r[name] for r in rows], tails)
            intervals[name] = [float(low), float(high)]
    return scores, intervals


def _per_resample(metric: Metric, predictions: Sequence[Any], references: Sequence[Any], index: list[list[int]]) -> list[dict[str, float]]:
    """The metric's scores on all examples, then on each resample in `index`."""
    resampler = metric.resampler(predictions, references)
    if resampler is not None:
        return [resampler(range(len(predictions)))] + [resampler(row) for row in index]
    rows = [metric.compute(predictions, references)]
    return rows + [metric.compute([predictions[i] for i in row], [references[i] for i in row]) for row in index]


def paired_differences(
    metrics: Sequence[Metric],
    first: Sequence[Any],
    second: Sequence[Any],
    references: Sequence[Any],
    *,
    resamples: int,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, dict[str, Any]]:
    """Per score, `first`'s minus `second`'s (two predictions of the same examples, e.g. oracle routing and the
    base model) and its paired percentile bootstrap interval: both scored on the same resamples, so what the examples
    share cancels. `seed` draws the resamples (the task's, as for its intervals).  -> {score: {difference, interval}}
    """
    if resamples <= 0 or len(references) < 2:
        return {}
    index = resample_indices(len(references), resamples, seed).tolist()
    tails = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    out: dict[str, dict[str, Any]] = {}
    for metric in metrics:
        a, b = _per_resample(metric, first, references, index), _per_resample(metric, second, references, index)
        for name in a[0]:
            low, high = np.percentile([x[name] - y[name] for x, y in zip(a[1:], b[1:], strict=True)], tails)
            out[name] = {"difference": float(a[0][name] - b[0][name]), "interval": [float(low), float(high)]}
    return out


def describe(resamples: int, run_seed: int) -> dict[str, Any]:
    """How the intervals of a run were made (intervals.json records it beside them)."""
    return {
        "method": "percentile bootstrap over held-out examples",
        "level": LEVEL,
        "resamples": resamples,
        "seed": run_seed,
        "seed_per_task": "mtkit.api.seeding.component_seed(seed, 'bootstrap.<task>')",
    }


def task_seed(run_seed: int, task: str) -> int:
    """The resampling seed of a task's held-out examples (the same for every routing of the task)."""
    return component_seed(run_seed, f"bootstrap.{task}")
