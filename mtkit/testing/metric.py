"""Contract checks for metrics: perfect predictions score the maximum, deterministically, as floats; a resampler
(bootstrap intervals) scores every resample as `compute` scores it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mtkit.testing._common import check_config

__all__ = ["check_metric"]


def check_metric(
    cls: type,
    params: Mapping[str, Any],
    *,
    references: Sequence[Any] = (0, 1, 2, 1, 0, 2),
    wrong: Sequence[Any] | None = None,
    maximum: float = 1.0,
) -> None:
    """Check a metric class with `params`.

    `references` are gold answers in the form the metric compares, `wrong` predictions that
    are not all correct (default: the references rotated by one), `maximum` the best score.
    """
    config = check_config(cls, "metric", params)
    metric = cls(config)
    refs = list(references)
    wrong = list(wrong) if wrong is not None else refs[1:] + refs[:1]
    perfect = metric.compute(list(refs), refs)
    assert isinstance(perfect, dict) and perfect, f"compute() returned {perfect!r}, not a non-empty dict"
    for key, value in perfect.items():
        assert isinstance(key, str) and key.startswith(cls.name), f"score name {key!r} should start with the metric's name {cls.name!r}"
        assert type(value) is float, f"score {key!r} is a {type(value).__name__}, not a Python float (it goes into JSON)"
        assert math.isclose(value, maximum, rel_tol=1e-6), f"perfect predictions score {key}={value}, not the maximum {maximum}"
    imperfect = metric.compute(wrong, refs)
    assert imperfect == metric.compute(list(wrong), list(refs)), "compute() is not deterministic"
    assert set(imperfect) == set(perfect), f"score names differ between calls: {sorted(imperfect)} vs {sorted(perfect)}"
    for key, value in imperfect.items():
        assert type(value) is float and math.isfinite(value), f"score {key!r} = {value!r}"
        assert value <= maximum + 1e-9, f"imperfect predictions score {key}={value}, above the maximum {maximum}"
    assert any(v < maximum - 1e-9 for v in imperfect.values()), "wrong predictions score the maximum too"
    _check_resampler(metric, wrong, refs)


def _check_resampler(metric: Any, predictions: list[Any], references: list[Any]) -> None:
    """With every index once a resampler gives `compute`'s scores, and a resample's scores are `compute`'s on it."""
    resampler = metric.resampler(predictions, references)
    if resampler is None:
        return
    n = len(predictions)
    whole, scores = resampler(range(n)), metric.compute(predictions, references)
    assert set(whole) == set(scores) and all(math.isclose(whole[k], scores[k], rel_tol=1e-9, abs_tol=1e-12) for k in scores), (
        f"resampler(all indices) gives {whole}, compute() {scores}"
    )
    index = [0, 0, *range(2, n)] if n > 2 else [0] * n
    resampled = metric.compute([predictions[i] for i in index], [references[i] for i in index])
    got = resampler(index)
    assert all(math.isclose(got[k], resampled[k], rel_tol=1e-9, abs_tol=1e-12) for k in resampled), (
        f"resampler({index}) gives {got}, compute() on that resample {resampled}"
    )
