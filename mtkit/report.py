"""The run report: a markdown summary and a training-curve plot."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtkit.rundir import RunDir

__all__ = ["plot_training_curves", "write_report"]


def plot_training_curves(run_dir: RunDir) -> str | None:
    records = [r for r in run_dir.logs() if r.get("event") == "train"]
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for phase in dict.fromkeys(r["phase"] for r in records):
        points = [(r["global_step"], r["loss"]) for r in records if r["phase"] == phase]
        ax.plot(*zip(*points, strict=True), label=phase)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir.path / "training_curves.png", dpi=110)
    plt.close(fig)
    return "training_curves.png"


def _table(scores: Mapping[str, Mapping[str, float]]) -> list[str]:
    metrics = sorted({m for s in scores.values() for m in s})
    lines = ["| task | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for task, values in scores.items():
        lines.append(f"| {task} | " + " | ".join(f"{values[m]:.4f}" if m in values else "" for m in metrics) + " |")
    return lines


def write_report(run_dir: RunDir, recipe: Mapping[str, Any], results: Mapping[str, Any], extra: list[str] | None = None) -> None:
    """report.md: setup, split sizes, per-phase metrics, routing analysis and plots."""
    data = run_dir.read_json("data.json")
    lines = [f"# Run `{recipe['run']['name']}`", ""]
    lines += [f"- backbone: `{recipe['backbone']['type']}`", f"- adapters: {', '.join(recipe.get('adapters', {})) or 'none'}"]
    lines += [f"- combiner: `{(recipe.get('combiner') or {'type': 'oracle'})['type']}`", f"- seed: {recipe['run'].get('seed', 0)}", ""]
    lines += ["## Data", "", "| task | dataset | train | test | split |", "|---|---|---|---|---|"]
    for task, info in data["tasks"].items():
        lines.append(f"| {task} | {info['dataset']} | {info['train']} | {info['test']} | {info['split']} |")
    for phase, by_routing in results.items():
        for routing, scores in by_routing.items():
            lines += ["", f"## Phase `{phase}` ({routing} routing)", ""] + _table(scores)
    lines += extra or []
    curves = plot_training_curves(run_dir)
    if curves:
        lines += ["", "## Training curves", "", f"![training curves]({curves})"]
    (run_dir.path / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
