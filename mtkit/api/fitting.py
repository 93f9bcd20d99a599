"""Combiners with a training routine of their own (`FitsItself`), run by a recipe phase with `fit_combiner = true`.

Some ways of reusing a frozen library learn beside the trainer's gradient steps, or instead of them: PHATGOOSE
trains a gate per adapter on that adapter's own task data, LoraHub searches adapter weights without gradients on
a few examples, retrieval describes each adapter by its task's inputs. Such a combiner implements `fit`; a phase
with `fit_combiner = true` calls it once, at the phase's start, with a `FitData`: the phase's data and a way to
run the model on it. What `fit` learns lives in the combiner's parameters or persistent buffers, so checkpoints and
the run directory carry it like any weights; the summary `fit` returns is logged and written to `combiner_fit.json`
and report.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["FitData", "FitsItself", "TaskBatch"]

TaskBatch = tuple[str, dict[str, Any]]
"""A task name and a collated batch of that task's examples (on the model's device)."""


@dataclass(frozen=True)
class FitData:
    """What a phase hands a combiner's `fit`: the phase's tasks, their training data and the model to run on it."""

    phase: str
    """The phase's name (logs and summaries name it)."""
    tasks: tuple[str, ...]
    """The tasks the phase draws from, in recipe order."""
    adapter_tasks: Mapping[str, tuple[str, ...]]
    """Each adapter's own tasks: those it serves under oracle routing (empty for an adapter no task uses)."""
    seed: int
    """A seed for the routine's random draws, from (run seed, phase index)."""
    device: torch.device
    batch_size: int
    """The phase's training batch size."""
    batches: Callable[[str, int | None], list[TaskBatch]]
    """`batches(task, limit)`: the first `limit` training examples of `task` (all with None), collated in batches of
    `batch_size`, in a fixed order."""
    loss: Callable[[Sequence[TaskBatch]], Tensor]
    """`loss(batches)`: the summed task losses of one forward pass of the model over `batches` under learned routing
    (this combiner at the sites), in evaluation mode (no dropout); gradients flow unless the caller turns them off."""
    forward_texts: Callable[[Sequence[str]], None]
    """`forward_texts(inputs)`: backbone passes (no heads) over raw input texts, tokenised as the run tokenises its
    inputs, in batches of `batch_size`, under learned routing (this combiner at the sites): for routines that read
    the representations of inputs given as text, e.g. example files."""
    log: Callable[[Mapping[str, Any]], None] = field(default=lambda record: None)
    """Write a record to the run's metrics log (e.g. the routine's progress)."""


@runtime_checkable
class FitsItself(Protocol):
    """A combiner with a training routine of its own, run by a phase with `fit_combiner = true`."""

    def fit(self, data: FitData) -> dict[str, Any]:
        """Learn what the combiner needs from `data`; store it in parameters or persistent buffers (so checkpoints
        keep it). Returns a JSON-serialisable summary (found weights, losses) for the run's log and report.

        Raises:
            MtkitError: the phase's data cannot serve the routine (e.g. an adapter without a task to learn from).
        """
        ...
