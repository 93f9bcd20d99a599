"""Sweep statistics against numbers worked out by hand (t quantile from a printed table)."""

from __future__ import annotations

import pytest

from mtkit.sweep.stats import paired_difference, summarize

VARIANT = [0.80, 0.85, 0.78, 0.90]
REFERENCE = [0.78, 0.80, 0.79, 0.86]


def test_stats_summary_is_mean_and_standard_error_over_seeds() -> None:
    # mean 3.33 / 4 = 0.8325; squared deviations sum to 0.008675; s = sqrt(0.008675 / 3); s.e. = s / 2
    summary = summarize(VARIANT)
    assert summary is not None and summary.n == 4
    assert summary.mean == pytest.approx(0.8325)
    assert summary.se == pytest.approx(0.0268871, abs=1e-7)
    single = summarize([0.7])
    assert single is not None and single.mean == 0.7 and single.se is None
    assert summarize([]) is None


def test_stats_paired_difference_has_student_t_interval_and_counts_seeds_at_least_as_good() -> None:
    # d = [0.02, 0.05, -0.01, 0.04]: mean 0.025, squared deviations sum to 0.0021, s = sqrt(0.0007) = 0.0264575,
    # s.e. = 0.0132288; t(0.975, 3 d.f.) = 3.182 (table), half-width 0.042099: [-0.017099, 0.067099]
    paired = paired_difference(VARIANT, REFERENCE)
    assert paired is not None and paired.n == 4
    assert paired.mean == pytest.approx(0.025)
    assert paired.low == pytest.approx(-0.017099, abs=2e-6)
    assert paired.high == pytest.approx(0.067099, abs=2e-6)
    assert paired.at_least == 3  # -0.01 is the one seed where the variant did worse


def test_stats_paired_difference_edge_cases() -> None:
    same = paired_difference([0.5, 0.6], [0.5, 0.6])
    assert same is not None and same.mean == 0.0 and same.low == same.high == 0.0 and same.at_least == 2
    one = paired_difference([0.6], [0.5])
    assert one is not None and one.mean == pytest.approx(0.1) and one.low is None and one.at_least == 1
    assert paired_difference([], []) is None
    with pytest.raises(ValueError, match="one reference score per seed"):
        paired_difference([0.1, 0.2], [0.1])
