"""Score tables in long form: one row per task and metric, so any mix of metrics fits a narrow terminal.

`report.md` and the CLI draw their evaluation tables from these rows; a column is one evaluation (a routing:
`base`, `oracle`, `learned`) and a cell its score with its bootstrap 95% interval where one was computed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["ROUTING_ORDER", "comparison_columns", "format_interval", "format_score", "score_rows"]

Scores = Mapping[str, Mapping[str, float]]
"""task -> metric -> score"""
Intervals = Mapping[str, Mapping[str, Sequence[float]]]
"""task -> metric -> [low, high]"""

ROUTING_ORDER = ("base", "oracle", "learned")
"""The order of the comparison columns: the backbone alone, adapters by task id, the learned combiner."""


def format_score(value: float) -> str:
    """Four decimals for scores in [0, 1]-like ranges, two for 0-100 scales (BLEU, chrF)."""
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def format_interval(bounds: Sequence[float] | None) -> str:
    if not bounds:
        return ""
    low, high = bounds
    digits = 3 if max(abs(low), abs(high)) < 10 else 1
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def score_rows(columns: Mapping[str, Scores]) -> list[tuple[str, str]]:
    """(task, metric) pairs of every task in any column, in the order first seen, each task's metrics sorted."""
    metrics: dict[str, set[str]] = {}
    for scores in columns.values():
        for task, values in scores.items():
            metrics.setdefault(task, set()).update(values)
    return [(task, metric) for task, names in metrics.items() for metric in sorted(names)]


def comparison_columns(by_routing: Mapping[str, object]) -> list[str]:
    """The routings of one phase in comparison order (base, oracle, learned, then any other)."""
    known = [r for r in ROUTING_ORDER if r in by_routing]
    return known + [r for r in by_routing if r not in known]
