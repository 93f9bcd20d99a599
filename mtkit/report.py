"""The run report: a markdown summary and a training-curve plot."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtkit import defaults
from mtkit.gradient_report import gradient_section
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


def _validation_checks(run_dir: RunDir) -> list[str]:
    """Each phase's validation scores by step, and the step whose weights `keep_best` restored."""
    records = run_dir.logs()
    checks = [r for r in records if r.get("event") == "validation"]
    kept = {r["phase"]: r for r in records if r.get("event") == "keep_best"}
    lines: list[str] = []
    for phase in dict.fromkeys(r["phase"] for r in checks):
        rows = [r for r in checks if r["phase"] == phase]
        tasks = list(rows[0]["scores"])
        lines += ["", f"## Validation checks in phase `{phase}`", ""]
        if phase in kept:
            groups = kept[phase]["kept"]
            if list(groups) == ["mean"]:
                lines += [f"Kept the weights of step {groups['mean']['step']} (mean validation score {groups['mean']['score']:.4f}).", ""]
            else:
                each = ", ".join(f"{task}'s from step {g['step']} ({g['score']:.4f})" for task, g in groups.items())
                lines += [f"Kept each task's own weights from its best check: {each}.", ""]
        lines += ["| step | mean | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 2) + "|"]
        for r in rows:
            firsts = [next(iter(r["scores"][t].values())) for t in tasks]
            lines.append(f"| {r['step']} | {r['score']:.4f} | " + " | ".join(f"{v:.4f}" for v in firsts) + " |")
    return lines


def write_report(run_dir: RunDir, recipe: Mapping[str, Any], results: Mapping[str, Any], extra: list[str] | None = None) -> None:
    """report.md: setup, split sizes, per-phase metrics, routing analysis and plots."""
    data = run_dir.read_json("data.json")
    lines = [f"# Run `{recipe['run']['name']}`", ""]
    lines += [f"- backbone: `{recipe['backbone']['type']}`", f"- adapters: {', '.join(recipe.get('adapters', {})) or 'none'}"]
    lines += [f"- combiner: `{(recipe.get('combiner') or {'type': defaults.COMBINER})['type']}`"]
    lines += [f"- balancer: `{(recipe.get('balancer') or {'type': defaults.BALANCER})['type']}`", f"- seed: {recipe['run'].get('seed', 0)}", ""]
    columns = ["dataset", "train", "validation", "test", "split"]
    if not any("validation" in info for info in data["tasks"].values()):
        columns.remove("validation")
    lines += ["## Data", "", "| task | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for task, info in data["tasks"].items():
        lines.append(f"| {task} | " + " | ".join(str(info.get(c, "")) for c in columns) + " |")
    for phase, by_routing in results.items():
        for routing, scores in by_routing.items():
            lines += ["", f"## Phase `{phase}` ({routing} routing)", ""] + _table(scores)
    lines += _validation_checks(run_dir)
    lines += gradient_section(run_dir)
    lines += extra or []
    curves = plot_training_curves(run_dir)
    if curves:
        lines += ["", "## Training curves", "", f"![training curves]({curves})"]
    (run_dir.path / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
