"""The run report: a markdown summary and a training-curve plot."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtkit.data.tasks import cut_warnings
from mtkit.recipe import defaults
from mtkit.rundir.gradient_report import gradient_section
from mtkit.rundir.intervals import FILE as INTERVALS_FILE
from mtkit.rundir.layout import RunDir
from mtkit.rundir.tables import comparison_columns, format_interval, format_score, score_rows

__all__ = ["COMBINER_FIT", "comparison_table", "difference_table", "plot_training_curves", "write_report"]

COMBINER_FIT = "combiner_fit.json"
"""What the combiner's own training routine found in each phase that ran it (`fit_combiner`), by phase name."""


def _smoothed(values: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average with bias correction (the first points are not pulled towards 0)."""
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**i))
    return out


def plot_training_curves(run_dir: RunDir) -> str | None:
    """training_curves.png: the training loss (raw and smoothed) per phase, and beside it the checks that say whether
    training helped: each validation check's mean score and each held-out evaluation's first score per task."""
    records = run_dir.logs()
    train = [r for r in records if r.get("event") == "train"]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    checks = [r for r in records if r.get("event") == "validation"]
    evals = [r for r in records if r.get("event") == "eval"]
    fig, (loss_ax, score_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    for phase in dict.fromkeys(r["phase"] for r in train):
        points = [(r["global_step"], r["loss"]) for r in train if r["phase"] == phase]
        steps, losses = zip(*points, strict=True)
        line = loss_ax.plot(steps, losses, alpha=0.25)[0]
        loss_ax.plot(steps, _smoothed(list(losses)), color=line.get_color(), label=phase)
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("training loss (smoothed)")
    loss_ax.legend(fontsize=8)
    if checks:
        score_ax.plot([r["global_step"] for r in checks], [r["score"] for r in checks], "o-", color="black", label="validation (mean)")
    for task, routing in dict.fromkeys((r["task"], r.get("routing")) for r in evals):
        values = [
            (r["global_step"], first)
            for r in evals
            if r["task"] == task and r.get("routing") == routing
            and (first := next((v for k, v in r.items() if k not in _LOG_KEYS), None)) is not None
        ]
        if values:
            score_ax.plot(*zip(*values, strict=True), "s--", label=f"{task}, held-out ({routing})")
    score_ax.set_xlabel("step")
    score_ax.set_ylabel("score (first metric)")
    if checks or evals:
        score_ax.legend(fontsize=8)
    else:
        score_ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(run_dir.path / "training_curves.png", dpi=110)
    plt.close(fig)
    return "training_curves.png"


_LOG_KEYS = {"time", "event", "phase", "routing", "task", "global_step", "step", "probe"}


def _table(scores: Mapping[str, Mapping[str, float]], intervals: Mapping[str, Mapping[str, list[float]]] | None = None) -> list[str]:
    """One row per task and metric: the score and, where computed, its bootstrap 95% interval."""
    lines = ["| task | metric | score | 95% interval |", "|---|---|---|---|"]
    for task, metric in score_rows({"score": scores}):
        if metric in scores[task]:
            bounds = (intervals or {}).get(task, {}).get(metric)
            lines.append(f"| {task} | {metric} | {format_score(scores[task][metric])} | {format_interval(bounds)} |")
    return lines


def _side_by_side(columns: list[str], rows: list[tuple[str, str]], cell: Any) -> list[str]:
    """A markdown table with one row per (task, metric) and one column per name, each cell `cell(column, task, metric)`."""
    lines = ["| task | metric | " + " | ".join(columns) + " |", "|---" * (len(columns) + 2) + "|"]
    lines += [f"| {task} | {metric} | " + " | ".join(cell(c, task, metric) for c in columns) + " |" for task, metric in rows]
    return lines


def comparison_table(by_routing: Mapping[str, Mapping[str, Mapping[str, float]]], intervals: Mapping[str, Any]) -> list[str]:
    """One phase's evaluations side by side (base, oracle, learned): one row per task and metric, each cell the
    score and its bootstrap 95% interval."""

    def cell(routing: str, task: str, metric: str) -> str:
        value = by_routing[routing].get(task, {}).get(metric)
        bounds = intervals.get(routing, {}).get(task, {}).get(metric)
        return "" if value is None else f"{format_score(value)} {format_interval(bounds)}".strip()

    return _side_by_side(comparison_columns(by_routing), score_rows(by_routing), cell)


def difference_table(differences: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]]) -> list[str]:
    """Paired differences of one phase ("oracle - base", ...): one row per task and metric, each cell the difference
    and its paired bootstrap 95% interval (an interval that excludes 0 separates the two)."""
    values = {pair: {task: dict(by_metric) for task, by_metric in tasks.items()} for pair, tasks in differences.items()}

    def cell(pair: str, task: str, metric: str) -> str:
        entry = differences[pair].get(task, {}).get(metric)
        return "" if entry is None else f"{entry['difference']:+.4f} {format_interval(entry['interval'])}".strip()

    return _side_by_side(list(differences), score_rows(values), cell)


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


def _combiner_fits(run_dir: RunDir) -> list[str]:
    """Each `fit_combiner` phase's summary: scalars as a list, tables of values by name (e.g. the found weights)."""
    if not (run_dir.path / COMBINER_FIT).is_file():
        return []
    lines: list[str] = []
    for phase, summary in run_dir.read_json(COMBINER_FIT).items():
        lines += ["", f"## Combiner routine in phase `{phase}` (`{summary.get('combiner')}`)", ""]
        tables = {k: v for k, v in summary.items() if isinstance(v, Mapping)}
        lines += [f"- {k}: {_cell(v)}" for k, v in summary.items() if k != "combiner" and k not in tables]
        for key, values in tables.items():
            lines += ["", f"| {key} | value |", "|---|---|", *(f"| {name} | {_cell(v)} |" for name, v in values.items())]
    return lines


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _max_length(recipe: Mapping[str, Any], task: str) -> int:
    task_length = recipe.get("tasks", {}).get(task, {}).get("max_length")
    return int(task_length or recipe.get("run", {}).get("max_length", 128))


def write_report(run_dir: RunDir, recipe: Mapping[str, Any], results: Mapping[str, Any], extra: list[str] | None = None) -> None:
    """report.md: setup, split sizes, per-phase metrics, routing analysis and plots."""
    data = run_dir.read_json("data.json")
    lines = [f"# Run `{recipe['run']['name']}`", ""]
    lines += [f"- backbone: `{recipe['backbone']['type']}`", f"- adapters: {', '.join(recipe.get('adapters', {})) or 'none'}"]
    lines += [f"- combiner: `{(recipe.get('combiner') or {'type': defaults.COMBINER})['type']}`"]
    lines += [f"- balancer: `{(recipe.get('balancer') or {'type': defaults.BALANCER})['type']}`", f"- seed: {recipe['run'].get('seed', 0)}", ""]
    columns = ["dataset", "train", "validation", "test", "cut", "split"]
    if not any("validation" in info for info in data["tasks"].values()):
        columns.remove("validation")
    if not any(info.get("cut") for info in data["tasks"].values()):
        columns.remove("cut")
    lines += ["## Data", "", "| task | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for task, info in data["tasks"].items():
        cells = {**info, "cut": ", ".join(f"{n} {split}" for split, n in info.get("cut", {}).items())}
        lines.append(f"| {task} | " + " | ".join(str(cells.get(c, "")) for c in columns) + " |")
    warnings = [w for task, info in data["tasks"].items() for w in cut_warnings(task, info, _max_length(recipe, task))]
    lines += ["", *(f"Warning: {w}." for w in warnings)] if warnings else []
    recorded = run_dir.read_json(INTERVALS_FILE) if (run_dir.path / INTERVALS_FILE).is_file() else {}
    intervals, differences = recorded.get("intervals", {}), recorded.get("differences", {})
    for phase, by_routing in results.items():
        if len(by_routing) > 1:
            lines += ["", f"## Phase `{phase}`: {', '.join(comparison_columns(by_routing))} (95% bootstrap intervals)", ""]
            lines += comparison_table(by_routing, intervals.get(phase, {}))
            if any(differences.get(phase, {}).values()):
                lines += ["", "Paired differences on the same held-out examples (95% bootstrap intervals):", ""]
                lines += difference_table(differences[phase])
            continue
        for routing, scores in by_routing.items():
            lines += ["", f"## Phase `{phase}` ({routing} routing)", ""] + _table(scores, intervals.get(phase, {}).get(routing))
    probes = run_dir.read_json("probes.json") if (run_dir.path / "probes.json").is_file() else {}
    for routing, by_task in probes.items():
        rows = {f"{task}/{probe}": scores for task, by_probe in by_task.items() for probe, scores in by_probe.items()}
        lines += ["", f"## Probes, end of run ({routing} routing)", ""] + _table(rows)
    lines += _validation_checks(run_dir)
    lines += _combiner_fits(run_dir)
    lines += gradient_section(run_dir)
    lines += extra or []
    curves = plot_training_curves(run_dir)
    if curves:
        lines += ["", "## Training curves", "", f"![training curves]({curves})"]
    (run_dir.path / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
