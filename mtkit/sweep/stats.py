"""Statistics over seeds: mean and standard error per variant, and paired differences to a reference
variant with a Student t confidence interval (scipy), as the comparison reports them.

Higher is better for every score the comparison pairs (mtkit's metrics and routing accuracy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["CONFIDENCE", "Paired", "Summary", "paired_difference", "summarize"]

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    """A score over seeds: how many, their mean, and its standard error (None for a single seed)."""

    n: int
    mean: float
    se: float | None


@dataclass(frozen=True)
class Paired:
    """Variant minus reference, seed by seed.

    Attributes:
        n: Seeds where both have the score.
        mean: Mean difference.
        low: Lower end of the confidence interval of the mean difference (None for a single seed).
        high: Upper end.
        at_least: Seeds where the variant scored at least as well as the reference.
    """

    n: int
    mean: float
    low: float | None
    high: float | None
    at_least: int


def summarize(values: Sequence[float]) -> Summary | None:
    """Mean and standard error of the mean (sample standard deviation / sqrt(n)); None without values."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return None
    return Summary(int(x.size), float(x.mean()), float(stats.sem(x)) if x.size > 1 else None)


def paired_difference(values: Sequence[float], reference: Sequence[float], confidence: float = CONFIDENCE) -> Paired | None:
    """The mean of `values[i] - reference[i]` with a Student t interval on n - 1 degrees of freedom.

    Args:
        values: The variant's score at each seed.
        reference: The reference variant's score at the same seeds, in the same order.
        confidence: Coverage of the interval.
    """
    if len(values) != len(reference):
        raise ValueError(f"paired scores need one reference score per seed ({len(values)} vs {len(reference)})")
    d = np.asarray(values, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    if d.size == 0:
        return None
    mean = float(d.mean())
    low = high = None
    if d.size > 1:
        se = float(stats.sem(d))
        if se == 0.0:
            low = high = mean  # every seed gave the same difference
        else:
            low, high = (float(v) for v in stats.t.interval(confidence, d.size - 1, loc=mean, scale=se))
    return Paired(int(d.size), mean, low, high, int((d >= 0).sum()))
