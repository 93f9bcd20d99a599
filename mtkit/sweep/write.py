"""The comparison's files: comparison.csv (one row per variant), runs.csv (one row per run), comparison.md (tables,
notes and what produced them), comparison.png (mean scores with standard-error bars), comparison_cost.png (each
score against inference cost) and provenance.json."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from mtkit.sweep.comparison import Comparison, VariantRow
from mtkit.sweep.plots import plot_cost, plot_scores
from mtkit.sweep.provenance import FILE as PROVENANCE_FILE
from mtkit.sweep.provenance import provenance_lines
from mtkit.sweep.stats import CONFIDENCE, Paired, Summary

__all__ = ["format_ci", "format_cost", "format_diff", "format_summary", "method_note", "write_comparison"]


def format_summary(summary: Summary | None) -> str:
    """`0.8123 ± 0.0123` (just the mean for a single seed)."""
    if summary is None:
        return ""
    return f"{summary.mean:.4f}" + (f" ± {summary.se:.4f}" if summary.se is not None else "")


def format_diff(paired: Paired | None) -> str:
    return "" if paired is None else f"{paired.mean:+.4f}"


def format_ci(paired: Paired | None) -> str:
    if paired is None or paired.low is None or paired.high is None:
        return ""
    return f"[{paired.low:+.4f}, {paired.high:+.4f}]"


def format_at_least(paired: Paired | None) -> str:
    return "" if paired is None else f"{paired.at_least}/{paired.n}"


def format_params(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def format_seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def format_cost(value: float | None) -> str:
    """An inference cost relative to the bare backbone: `1.12x`."""
    return "" if value is None else f"{value:.2f}x"


def method_note(comparison: Comparison) -> str:
    """How to read the numbers, in one paragraph."""
    seeds = f"seeds {', '.join(map(str, comparison.seeds))}" if comparison.seeds else "one run per variant at its recipe's seed"
    return (
        f"Scores on held-out data after the last phase, {seeds}: mean ± standard error over seeds. "
        f"diff: the variant minus `{comparison.reference}` (the reference), seed by seed, averaged, with its "
        f"{CONFIDENCE:.0%} confidence interval (Student t over the paired seeds); ≥ ref: seeds where the variant scored "
        "at least as well. seconds: mean wall-clock per run (a forked run's excludes its shared phases). "
        "inference: a backbone pass over a fixed batch relative to the bare backbone's, as deployed (merged into the "
        "base weights where it can be): time (median of interleaved rounds; it depends on the machine's load) and "
        "floating-point operations (counted by torch)."
    )


def _variant_csv_row(comparison: Comparison, row: VariantRow) -> dict[str, Any]:
    out: dict[str, Any] = {"variant": row.variant, "status": row.status, "runs": row.runs, "ok": row.ok}
    for metric in comparison.metrics:
        summary, paired = row.scores.get(metric), row.diffs.get(metric)
        out[metric] = summary.mean if summary else None
        out[f"{metric}_se"] = summary.se if summary else None
        out[f"{metric}_diff"] = paired.mean if paired else None
        out[f"{metric}_ci_low"] = paired.low if paired else None
        out[f"{metric}_ci_high"] = paired.high if paired else None
        out[f"{metric}_ge_ref"] = paired.at_least if paired else None
    out |= {"trained_params": row.trained_params, "inference_time": row.cost, "inference_flops": row.cost_flops}
    out |= {"seconds": row.seconds, "shared_phases": " ".join(row.shared_phases)}
    out |= {"dropped_keys": " ".join(row.dropped), "errors": " | ".join(row.errors)}
    return out


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _markdown(comparison: Comparison) -> str:
    metrics = comparison.metrics
    failed = any(row.errors for row in comparison.variants)
    head = ["variant", "status", *metrics, "trained params", "inference time", "inference FLOPs", "seconds", "shared phases", "dropped keys"]
    head += ["errors"] if failed else []
    lines = [method_note(comparison), "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in comparison.variants:
        cells = [row.variant, row.status, *(format_summary(row.scores.get(m)) for m in metrics)]
        cells += [format_params(row.trained_params), format_cost(row.cost), format_cost(row.cost_flops), format_seconds(row.seconds)]
        cells += [", ".join(row.shared_phases), ", ".join(row.dropped)]
        cells += ["; ".join(row.errors).replace("|", "\\|")] if failed else []
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Paired differences to `{comparison.reference}`: diff [{CONFIDENCE:.0%} CI] (seeds ≥ ref)", ""]
    lines += ["| variant | " + " | ".join(metrics) + " |", "|" + "---|" * (len(metrics) + 1)]
    for row in comparison.variants:
        if row.variant == comparison.reference:
            continue
        cells = [" ".join(x for x in (format_diff(p), format_ci(p), f"({format_at_least(p)})" if p else "") if x) for p in (row.diffs.get(m) for m in metrics)]
        lines.append(f"| {row.variant} | " + " | ".join(cells) + " |")
    if comparison.shared:
        lines += ["", "Shared phases (trained once, then each run continued from their last checkpoint):", ""]
        lines += [f"- {line}" for line in comparison.shared]
    if comparison.provenance:
        lines += ["", f"Produced by (`{PROVENANCE_FILE}`):", "", *provenance_lines(comparison.provenance)]
    return "\n".join(lines) + "\n"


def write_comparison(comparison: Comparison) -> None:
    """Write comparison.csv, runs.csv, comparison.md, the plots and provenance.json into the sweep directory."""
    root = comparison.root
    root.mkdir(parents=True, exist_ok=True)
    _write_csv(root / "comparison.csv", [_variant_csv_row(comparison, row) for row in comparison.variants])
    runs = [
        {"variant": r.variant, "seed": r.seed, "status": r.status, **r.scores, "trained_params": r.trained_params,
         "inference_time": r.cost, "inference_flops": r.cost_flops, "seconds": r.seconds,
         "start": r.start, "skipped": r.skipped, "shared_phases": " ".join(r.shared_phases), "error": r.error or "", "run_dir": r.run_dir}
        for r in comparison.runs
    ]
    _write_csv(root / "runs.csv", runs)
    if comparison.provenance:
        (root / PROVENANCE_FILE).write_text(json.dumps(comparison.provenance, indent=2) + "\n", encoding="utf-8")
    (root / "comparison.md").write_text(_markdown(comparison), encoding="utf-8")
    plot_scores(comparison, root / "comparison.png")
    plot_cost(comparison, root / "comparison_cost.png")
