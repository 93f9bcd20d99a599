"""The sweep's run plan: where each run goes, and which leading phases runs share.

Runs whose resolved recipes agree on phases 0..k (everything else equal too, except where the run
goes and, while no phase so far uses it, the combiner) train those phases once, in a shared run under
`_shared/`; each of them then starts from that run's checkpoint at the end of phase k. Shared runs nest:
runs that also agree on phase k+1 share it in a second shared run forked from the first.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtkit.recipe.schema import runs_recipe_combiner
from mtkit.sweep.resolve import Job

__all__ = ["COMBINER_KEYS", "Fork", "JobSpec", "Plan", "make_plan", "prefix_key"]

COMBINER_KEYS = "combiner."
"""State-dict prefix of the combiner's weights: a fork whose shared phases never used the combiner builds its own."""

SHARED = "_shared"


@dataclass(frozen=True)
class Fork:
    """Where a run starts: another run's checkpoint at the end of its last phase.

    Attributes:
        source: Key of the run it starts from (a shared run).
        source_dir: That run's directory.
        phases: How many leading phases it takes from there.
        drop: State-dict key prefixes not taken (the combiner, when no shared phase used it).
    """

    source: str
    source_dir: str
    phases: int
    drop: tuple[str, ...] = ()


@dataclass
class JobSpec:
    """A run to execute: plain data, so it crosses into worker processes and Ray tasks as JSON.

    Attributes:
        key: `variant/seed-N`, or `_shared/<phase>-<hash>` for a shared run.
        run_dir: Absolute path of its run directory.
        recipe: The resolved recipe it runs (`run.output_dir` is `run_dir`).
        fork: The shared run it starts from, if any.
        shared: True for a shared run (its forks need its last checkpoint).
        shared_phases: Names of the phases it takes from a shared run.
    """

    key: str
    run_dir: str
    recipe: dict[str, Any] = field(repr=False)
    fork: Fork | None = None
    shared: bool = False
    shared_phases: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "fork"}
        data["fork"] = self.fork.__dict__ if self.fork else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobSpec:
        values = dict(data)
        fork = values.pop("fork")
        return cls(**values, fork=Fork(**{**fork, "drop": tuple(fork["drop"])}) if fork else None)


@dataclass
class Plan:
    """Shared runs first (parents before children), then the sweep's own runs, in job order."""

    specs: list[JobSpec]
    jobs: dict[str, Job]  # spec key -> the job it runs (sweep runs only)


def _uses_combiner(phases: Sequence[Mapping[str, Any]]) -> bool:
    return any(runs_recipe_combiner(p) for p in phases)


def prefix_key(recipe: Mapping[str, Any], k: int) -> str | None:
    """What two recipes must agree on to share phases 0..k; None where phase k cannot end a shared run.

    The run's place (`run.output_dir`, `run.name`) and CPU threads never matter; the combiner table matters
    only once a shared phase routes with it or trains it. A shared run must leave its forks a phase to run.
    (A temperature schedule's value is a buffer of the combiner, saved in checkpoints, so it forks with it.)
    """
    phases = recipe.get("phases") or []
    if k >= len(phases) - 1:
        return None
    trimmed = copy.deepcopy(dict(recipe))
    trimmed["phases"] = phases[: k + 1]
    trimmed["run"] = {n: v for n, v in (trimmed.get("run") or {}).items() if n not in ("output_dir", "name", "threads")}
    if not _uses_combiner(phases[: k + 1]):
        trimmed.pop("combiner", None)
    return json.dumps(trimmed, sort_keys=True)


def _spec_recipe(recipe: Mapping[str, Any], run_dir: Path, threads: int | None) -> dict[str, Any]:
    out = copy.deepcopy(dict(recipe))
    out["run"] = {**out.get("run", {}), "output_dir": str(run_dir)}
    if threads is not None:
        out["run"]["threads"] = threads
    return out


@dataclass
class _Node:
    k: int
    key: str
    members: frozenset[int]
    parent: _Node | None = None
    spec: JobSpec | None = None


def _nodes(jobs: Sequence[Job]) -> list[_Node]:
    """Groups of two or more jobs sharing phases 0..k, deepest k per group, with their parents."""
    deepest: dict[frozenset[int], _Node] = {}
    longest = max(len(job.recipe.get("phases") or []) for job in jobs)
    for k in range(longest - 1):
        groups: dict[str, list[int]] = {}
        for i, job in enumerate(jobs):
            key = prefix_key(job.recipe, k)
            if key is not None:
                groups.setdefault(key, []).append(i)
        for key, members in groups.items():
            if len(members) > 1:
                deepest[frozenset(members)] = _Node(k, key, frozenset(members))  # a deeper k replaces a shallower one
    nodes = sorted(deepest.values(), key=lambda n: (n.k, min(n.members)))
    for node in nodes:
        # Agreeing on phases 0..k implies agreeing on every shorter prefix, so the containing groups nest.
        outer = [o for o in nodes if o.k < node.k and node.members < o.members]
        node.parent = max(outer, key=lambda o: o.k, default=None)
    return nodes


def _fork(node: _Node) -> Fork:
    assert node.spec is not None
    phases = node.spec.recipe["phases"]
    return Fork(node.spec.key, node.spec.run_dir, node.k + 1, () if _uses_combiner(phases) else (COMBINER_KEYS,))


def make_plan(jobs: Sequence[Job], root: Path, *, share: bool = True, threads: int | None = None) -> Plan:
    """Run directories for `jobs` under `root` (`<variant>/seed-<n>`), with shared leading phases when `share`.

    Args:
        jobs: The sweep's runs.
        root: The sweep directory (absolute).
        share: Train identical leading phases once.
        threads: CPU threads each run uses (`run.threads`), or None to keep the recipes'.
    """
    specs: list[JobSpec] = []
    nodes = _nodes(jobs) if share and jobs else []
    for node in nodes:
        first = jobs[min(node.members)]
        recipe = copy.deepcopy(first.recipe)
        recipe["phases"] = recipe["phases"][: node.k + 1]
        digest = hashlib.sha256(node.key.encode()).hexdigest()[:10]
        key = f"{SHARED}/{recipe['phases'][-1]['name']}-{digest}"
        run_dir = root / key
        fork = _fork(node.parent) if node.parent else None
        names = [p["name"] for p in recipe["phases"][: fork.phases]] if fork else []
        node.spec = JobSpec(key, str(run_dir), _spec_recipe(recipe, run_dir, threads), fork, shared=True, shared_phases=names)
        specs.append(node.spec)
    by_key: dict[str, Job] = {}
    for i, job in enumerate(jobs):
        run_dir = root / job.variant / f"seed-{job.seed}"
        owner = max((n for n in nodes if i in n.members), key=lambda n: n.k, default=None)
        fork = _fork(owner) if owner else None
        names = [p["name"] for p in job.recipe["phases"][: fork.phases]] if fork else []
        specs.append(JobSpec(job.key, str(run_dir), _spec_recipe(job.recipe, run_dir, threads), fork, shared_phases=names))
        by_key[job.key] = job
    return Plan(specs, by_key)
