"""The comparison of a sweep: each run's scores read from its run directory, then per variant the mean
and standard error over seeds and the paired difference to the reference variant."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtkit.recipe.schema import ORACLE_ROUTING
from mtkit.sweep.job import RECORD, Outcome
from mtkit.sweep.plan import Plan
from mtkit.sweep.stats import Paired, Summary, paired_difference, summarize

__all__ = ["Comparison", "RunRow", "VariantRow", "compare", "run_cost", "run_scores"]

ROUTING = "routing_accuracy"


@dataclass
class RunRow:
    """One run of the sweep (a variant at one seed) as the comparison reads it."""

    variant: str
    seed_index: int
    seed: int
    run_dir: str
    status: str  # ok or error
    error: str | None = None
    seconds: float | None = None
    start: str = ""
    shared_phases: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    trained_params: int | None = None
    skipped: bool = False  # finished by an earlier sweep
    cost: float | None = None  # inference time over the bare backbone's (inference.json, merged where it can be)
    cost_flops: float | None = None  # the same for floating-point operations


@dataclass
class VariantRow:
    """A variant over its seeds."""

    variant: str
    runs: int
    ok: int
    scores: dict[str, Summary] = field(default_factory=dict)
    diffs: dict[str, Paired] = field(default_factory=dict)
    trained_params: int | None = None
    seconds: float | None = None
    cost: float | None = None
    cost_flops: float | None = None
    shared_phases: list[str] = field(default_factory=list)
    dropped: tuple[str, ...] = ()
    errors: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "ok" if self.ok == self.runs else ("error" if self.ok == 0 else f"{self.ok}/{self.runs} ok")


@dataclass
class Comparison:
    """What `mtkit ablate` prints and writes.

    Attributes:
        root: The sweep directory.
        reference: The variant the others are paired against.
        seeds: The seeds given with --seeds (None: each variant ran once at its recipe's seed).
        metrics: Score columns (`task/metric`, then `routing_accuracy` when some run routed).
        variants: One row per variant, in the order given.
        runs: One row per run.
        shared: One line per shared run: the phases it trained once, and for which runs.
        seconds: Wall-clock seconds of this sweep (runs skipped as finished cost nothing).
        provenance: What produced it (mtkit version and commit, packages, hardware; mtkit.sweep.provenance).
    """

    root: Path
    reference: str
    seeds: list[int] | None
    metrics: list[str]
    variants: list[VariantRow]
    runs: list[RunRow]
    shared: list[str] = field(default_factory=list)
    seconds: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_scores(run_dir: Path) -> tuple[dict[str, float], int | None]:
    """A finished run's final scores (`task/metric`, the last phase under its routing, and `routing_accuracy`)
    and its trained parameter count."""
    results, recipe = _read(run_dir / "results.json"), _read(run_dir / "recipe.json")
    scores: dict[str, float] = {}
    if results and recipe:
        last = recipe["phases"][-1]
        by_routing = results.get(last["name"]) or {}
        final: dict[str, dict[str, float]] = by_routing.get(last.get("routing", ORACLE_ROUTING)) or next(iter(by_routing.values()), {})
        scores = {f"{task}/{metric}": value for task, values in final.items() for metric, value in values.items()}
    routing = _read(run_dir / "routing.json")
    if routing and routing.get("mean_routing_accuracy") is not None:
        scores[ROUTING] = routing["mean_routing_accuracy"]
    parameters = _read(run_dir / "parameters.json")
    return scores, parameters["trained"] if parameters else None


def run_cost(run_dir: Path) -> tuple[float | None, float | None]:
    """A finished run's inference cost over its bare backbone's: (time, floating-point operations), if recorded."""
    from mtkit.rundir.cost import FILE

    cost = _read(run_dir / FILE) or {}
    return cost.get("relative"), cost.get("relative_flops")


def _run_row(job: Any, run_dir: str, outcome: Outcome) -> RunRow:
    record = _read(Path(run_dir) / RECORD) or {}
    ok = outcome.status in ("ok", "skipped")
    row = RunRow(job.variant, job.seed_index, job.seed, run_dir, "ok" if ok else "error", None if ok else outcome.error)
    row.seconds = record.get("seconds") if outcome.status == "skipped" else outcome.seconds
    row.start = record.get("start", outcome.start)
    row.skipped = outcome.status == "skipped"
    row.shared_phases = list(record.get("shared_phases") or [])
    if ok:
        row.scores, row.trained_params = run_scores(Path(run_dir))
        row.cost, row.cost_flops = run_cost(Path(run_dir))
    return row


def _variant_row(name: str, runs: Sequence[RunRow], dropped: tuple[str, ...], metrics: Sequence[str], reference: Sequence[RunRow] | None) -> VariantRow:
    ok = [r for r in runs if r.status == "ok"]
    row = VariantRow(name, len(runs), len(ok), dropped=dropped)
    for metric in metrics:
        summary = summarize([r.scores[metric] for r in ok if metric in r.scores])
        if summary is not None:
            row.scores[metric] = summary
        if reference is None:
            continue
        theirs = {r.seed_index: r.scores[metric] for r in reference if r.status == "ok" and metric in r.scores}
        pairs = [(r.scores[metric], theirs[r.seed_index]) for r in ok if metric in r.scores and r.seed_index in theirs]
        paired = paired_difference([a for a, _ in pairs], [b for _, b in pairs])
        if paired is not None:
            row.diffs[metric] = paired
    params = {r.trained_params for r in ok if r.trained_params is not None}
    row.trained_params = max(params) if params else None
    seconds = [r.seconds for r in ok if r.seconds]
    row.seconds = sum(seconds) / len(seconds) if seconds else None
    costs = [r.cost for r in ok if r.cost is not None]
    row.cost = sum(costs) / len(costs) if costs else None
    flops = {r.cost_flops for r in ok if r.cost_flops is not None}
    row.cost_flops = max(flops) if flops else None
    row.shared_phases = max((r.shared_phases for r in runs), key=len, default=[])
    row.errors = [f"seed {r.seed}: {r.error}" for r in runs if r.status == "error"]
    return row


def compare(
    root: Path, plan: Plan, outcomes: Mapping[str, Outcome], variants: Sequence[str], reference: str, seeds: Sequence[int] | None
) -> Comparison:
    """Read every run of `plan` and compare the variants (`reference` first in the pairing)."""
    runs = [_run_row(plan.jobs[s.key], s.run_dir, outcomes[s.key]) for s in plan.specs if not s.shared]
    metrics = list(dict.fromkeys(m for r in runs for m in r.scores if m != ROUTING))
    metrics += [ROUTING] if any(ROUTING in r.scores for r in runs) else []
    by_variant = {name: [r for r in runs if r.variant == name] for name in variants}
    dropped = {job.variant: job.dropped for job in plan.jobs.values()}
    rows = [
        _variant_row(name, by_variant[name], dropped.get(name, ()), metrics, None if name == reference else by_variant[reference])
        for name in variants
    ]
    shared = []
    for spec in (s for s in plan.specs if s.shared):
        users = [s.key for s in plan.specs if s.fork and s.fork.source == spec.key]
        phases = ", ".join(p["name"] for p in spec.recipe["phases"])
        status = outcomes[spec.key].status if spec.key in outcomes else "idle"
        status = {"ok": "trained now", "skipped": "trained before", "error": "failed", "idle": "not needed: its runs had finished"}[status]
        shared.append(f"{spec.key} ({status}): phases {phases} trained once for {', '.join(users)}")
    return Comparison(root, reference, list(seeds) if seeds else None, metrics, rows, runs, shared)
