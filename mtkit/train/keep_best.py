"""Validation-based weight selection within a phase (a phase's `eval_every` and `keep_best`).

A phase scores every task's validation split before its first step and every `eval_every` steps.
`BestWeights` keeps, for each group of trained parameters, a copy from the check where the group's
score was best, and puts them back at the phase's end. With `keep_best = "mean"` there is one group,
all trained parameters, scored by the mean over tasks; with `"per_task"` each task's group is the
parameters only its loss reaches (its head, its adapter under oracle routing, its per-task fusion),
scored by that task alone. The copies travel in mid-phase checkpoints, so a resumed run selects the
same weights as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mtkit.api.errors import MtkitError
from mtkit.rundir.checkpoint import load_tensors
from mtkit.train.balancing import parameter_owners

__all__ = ["BestWeights", "group_scores", "parameters_by_task", "primary_score"]

FILE = "best.safetensors"
MEAN = "mean"  # the group name of keep_best = "mean"

Named = Sequence[tuple[str, Tensor]]


def primary_score(values: Mapping[str, float]) -> float:
    """A task's primary score: the first score its first metric returns (higher is better)."""
    return next(iter(values.values()))


def group_scores(mode: str, scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The score of each selection group at one check."""
    per_task = {task: primary_score(values) for task, values in scores.items()}
    if mode == "per_task":
        return per_task
    return {MEAN: sum(per_task.values()) / len(per_task)}


def parameters_by_task(named: Named, losses: Mapping[str, Callable[[], Tensor]], where: str) -> dict[str, list[tuple[str, Tensor]]]:
    """Split trained parameters by the one task whose loss reaches them (per-task selection).

    Each task's loss on a small batch is differentiated with respect to every trained parameter;
    a parameter in the graph of two tasks' losses cannot take one task's best weights without
    changing the other's, so it is an error. Parameters no task's loss reaches keep their final values.
    """
    owners = parameter_owners(named, losses)
    shared = [f"{name} ({', '.join(tasks)})" for name, tasks in owners.items() if len(tasks) > 1]
    if shared:
        raise MtkitError(
            f"{where}: keep_best = \"per_task\" needs every trained parameter to serve one task, but "
            f"{len(shared)} serve several, e.g. {', '.join(shared[:3])}; use keep_best = \"mean\", or train per-task "
            "parameters only (heads, per-task adapters under oracle routing, a combiner with per_task = true)"
        )
    groups: dict[str, list[tuple[str, Tensor]]] = {task: [] for task in losses}
    for name, param in named:
        if name in owners:
            groups[owners[name][0]].append((name, param))
    return groups


class BestWeights:
    """For each group of parameters, a copy from the check where the group scored best."""

    def __init__(self, groups: Mapping[str, Named], min_improvement: float = 0.0) -> None:
        self.groups = {g: list(named) for g, named in groups.items()}
        self.min_improvement = min_improvement
        self.steps: dict[str, int | None] = {g: None for g in self.groups}
        self.scores: dict[str, float] = {g: float("-inf") for g in self.groups}
        self.tensors: dict[str, Tensor] = {}

    def offer(self, step: int, scores: Mapping[str, float]) -> list[str]:
        """Copy each group whose score beats its best so far by more than `min_improvement` (ties keep the
        earlier); return those groups."""
        improved = [g for g in self.groups if self.steps[g] is None or scores[g] > self.scores[g] + self.min_improvement]
        for g in improved:
            self.steps[g], self.scores[g] = step, scores[g]
            self.tensors |= {n: p.detach().to("cpu", copy=True) for n, p in self.groups[g]}
        return improved

    @torch.no_grad()
    def restore(self) -> None:
        for named in self.groups.values():
            for name, param in named:
                param.copy_(self.tensors[name].to(param.device))

    def kept(self) -> dict[str, dict[str, Any]]:
        """Each group's kept step and score (what checkpoints and the log record)."""
        return {g: {"step": self.steps[g], "score": self.scores[g]} for g in self.groups if self.steps[g] is not None}

    def load(self, folder: Path, kept: Mapping[str, Mapping[str, Any]]) -> None:
        """Take the best weights a mid-phase checkpoint recorded (`kept` as `kept()` gave it)."""
        for g, entry in kept.items():
            self.steps[g], self.scores[g] = entry["step"], entry["score"]
        if kept:
            self.tensors = load_tensors(folder / FILE)
