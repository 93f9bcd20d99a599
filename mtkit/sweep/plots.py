"""The comparison's plots: mean scores with standard-error bars (comparison.png), and each score against the
inference cost relative to the bare backbone, every variant a labelled point (comparison_cost.png). Matplotlib, on
the Agg backend (no display needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mtkit.sweep.comparison import ROUTING, Comparison

__all__ = ["plot_cost", "plot_scores"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _shares(comparison: Comparison) -> bool:
    """Whether every score is a share in [0, 1] (accuracy, F1), so the full scale can be drawn."""
    return all(s.mean + (s.se or 0.0) <= 1.0 for row in comparison.variants for s in row.scores.values())


def plot_scores(comparison: Comparison, path: Path) -> None:
    """Grouped bars: per score column, each variant's mean over seeds with its standard error."""
    metrics, rows = comparison.metrics, comparison.variants
    if not metrics:
        return
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(metrics) * len(rows)), 4))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        summaries = [row.scores.get(m) for m in metrics]
        means = [s.mean if s else 0.0 for s in summaries]
        errors = [s.se if s and s.se is not None else 0.0 for s in summaries]
        ax.bar([m + i * width for m in range(len(metrics))], means, width, yerr=errors, capsize=3, label=row.variant)
    ax.set_xticks([m + 0.4 - width / 2 for m in range(len(metrics))], metrics, rotation=30, ha="right")
    if _shares(comparison):
        ax.set_ylim(0, 1.05)  # shares (accuracy, F1): the full scale; other scores keep matplotlib's
    ax.set_ylabel("mean over seeds (bars: ± s.e.)" if comparison.seeds and len(comparison.seeds) > 1 else "score")
    ax.legend(fontsize=8, ncols=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cost(comparison: Comparison, path: Path) -> None:
    """One panel per score column: each variant's mean score (± s.e.) against its inference time relative to the bare
    backbone (`inference.json`; FLOPs where no time was recorded). Nothing is drawn when no run measured its cost."""
    metrics = [m for m in comparison.metrics if m != ROUTING]
    rows = [r for r in comparison.variants if r.cost is not None or r.cost_flops is not None]
    if not metrics or not rows:
        return
    timed = all(r.cost is not None for r in rows)
    plt = _pyplot()
    columns = min(3, len(metrics))
    lines = math.ceil(len(metrics) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(max(8.0, 4.6 * columns), 3.8 * lines + 1.0), squeeze=False)
    colours = plt.get_cmap("tab20")
    for panel, metric in enumerate(metrics):
        ax = axes[panel // columns][panel % columns]
        for i, row in enumerate(rows):
            summary = row.scores.get(metric)
            x = row.cost if timed else row.cost_flops
            if summary is None or x is None:
                continue
            ax.errorbar([x], [summary.mean], yerr=[summary.se or 0.0], fmt="o", capsize=3, color=colours(i % 20), label=row.variant)
            ax.annotate(row.variant, (x, summary.mean), textcoords="offset points", xytext=(4, 3), fontsize=7)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("inference time x bare backbone" if timed else "inference FLOPs x bare backbone", fontsize=8)
        ax.axvline(1.0, color="grey", lw=0.6, ls=":")
        ax.grid(alpha=0.3)
    for panel in range(len(metrics), lines * columns):
        axes[panel // columns][panel % columns].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, fontsize=7, loc="lower center", ncols=min(6, len(labels)), bbox_to_anchor=(0.5, 0.0))
    bottom = min(0.3, 0.06 + 0.03 * math.ceil(len(labels) / 6) / lines)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
