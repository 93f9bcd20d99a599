"""The run report's section on the tasks' gradients on the shared parameters (a balancer's `diagnostics_every`):
how much the tasks conflict, and when. Reads the `gradients` records of metrics.jsonl; never imports torch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mtkit.rundir.layout import RunDir

__all__ = ["PLOT", "gradient_section", "plot_task_gradients"]

PLOT = "task_gradients.png"
COSINE, NORM = "grad_cos/", "grad_norm/"


def _series(records: Sequence[dict[str, Any]], prefix: str) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        for key, value in record.items():
            if key.startswith(prefix):
                series.setdefault(key[len(prefix) :], []).append((record["global_step"], value))
    return series


def plot_task_gradients(run_dir: RunDir, records: Sequence[dict[str, Any]]) -> str:
    """A PNG of the cosine between every two tasks' gradients (top) and each task's gradient norm (bottom) by step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    for pair, points in _series(records, COSINE).items():
        top.plot(*zip(*points, strict=True), label=pair.replace(",", " / "), linewidth=1)
    top.axhline(0.0, color="black", linewidth=0.6)
    top.set_ylabel("cosine between tasks' gradients")
    top.legend(fontsize=7)
    for task, points in _series(records, NORM).items():
        bottom.plot(*zip(*points, strict=True), label=task, linewidth=1)
    bottom.set_yscale("log")
    bottom.set_ylabel("gradient norm")
    bottom.set_xlabel("step")
    bottom.legend(fontsize=7)
    phases: dict[str, int] = {}
    for record in records:
        phases.setdefault(record["phase"], record["global_step"])
    for name, start in list(phases.items())[1:]:  # where each later phase begins
        for axis in (top, bottom):
            axis.axvline(start, color="grey", linestyle=":", linewidth=0.8)
    fig.tight_layout()
    fig.savefig(run_dir.path / PLOT, dpi=110)
    plt.close(fig)
    return PLOT


def gradient_section(run_dir: RunDir) -> list[str]:
    """Report lines: per pair of tasks, the mean cosine of their gradients and how often they conflicted; the plot."""
    records = [r for r in run_dir.logs() if r.get("event") == "gradients"]
    if not records:
        return []
    lines = ["", "## Task gradients on the shared parameters", ""]
    lines += [
        (
            f"Computed every few steps ({len(records)} checks): the cosine between two tasks' gradients is below 0 where "
            "a step down one task's loss goes up the other's."
        ),
        "",
        "| phase | tasks | mean cosine | min | checks below 0 |",
        "|---|---|---|---|---|",
    ]
    for phase in dict.fromkeys(r["phase"] for r in records):
        for pair, points in _series([r for r in records if r["phase"] == phase], COSINE).items():
            values = [v for _, v in points]
            below = sum(v < 0 for v in values)
            lines.append(
                f"| {phase} | {pair.replace(',', ' / ')} | {sum(values) / len(values):.3f} | {min(values):.3f} | "
                f"{below} of {len(values)} |"
            )
    lines += ["", f"![task gradients]({plot_task_gradients(run_dir, records)})"]
    return lines
