"""Evaluation of every task on its held-out split, with one of the model's combiners running (or none: `base`, the
backbone with no adapter)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from mtkit.api.combiner import RoutesByTask
from mtkit.api.errors import MtkitError
from mtkit.api.interfaces import Metric
from mtkit.data.tasks import TaskData
from mtkit.model.multitask import MultiTaskModel
from mtkit.rundir.intervals import scores_and_intervals, task_seed

__all__ = ["TaskEvaluation", "evaluate", "evaluate_examples", "move"]


@dataclass
class TaskEvaluation:
    scores: dict[str, float]
    predictions: list[Any]
    references: list[Any]
    routing: Tensor | None = None  # (N, K) per-sample adapter weights under learned routing
    extras: dict[str, Any] = field(default_factory=dict)
    intervals: dict[str, list[float]] = field(default_factory=dict)  # score -> bootstrap [low, high] (see intervals.py)


def move(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


Gather = Callable[[list[Any]], list[Any]]
"""Collects a list from every process into one, in process order (accelerate.utils.gather_object)."""


@torch.no_grad()
def evaluate_examples(
    model: MultiTaskModel,
    task: str,
    examples: Any,
    metrics: Sequence[Metric],
    *,
    combiner: str | None,
    batch_size: int,
    device: torch.device,
    shard: tuple[int, int] = (0, 1),
    gather: Gather | None = None,
    resamples: int = 0,
    run_seed: int = 0,
) -> TaskEvaluation:
    """Predict encoded `examples` of `task` with combiner `combiner` (a path of the model's combiners; None: the
    backbone with no adapter) running, and score them with the task's metrics. The routing weights are recorded unless
    that combiner routes by task id.

    With `shard` = (process index, processes) each process predicts one contiguous share and `gather` joins the
    shares in order, so every example is predicted exactly once (no padding of the last batch). With `resamples`,
    each score gets a bootstrap 95% interval over the examples, resampled by a seed from `run_seed` and the task.
    """
    if shard[1] > 1:
        examples = examples.shard(num_shards=shard[1], index=shard[0], contiguous=True)
    was_training = model.training
    model.eval()
    tokenizer = model.backbone.tokenizer
    head = model.heads[task]
    view = model.for_task(task)
    predictions: list[Any] = []
    references: list[Any] = []
    try:
        # Routing worth recording is what a combiner decides; when it routes by task id, the task ids decide it.
        record = combiner is not None and not isinstance(model.combiners[combiner], RoutesByTask)
        bare = model.adapters_disabled() if combiner is None else nullcontext()
        running = model.use_combiner(combiner) if combiner is not None else nullcontext()
        with bare, running, model.recording_routing() if record else nullcontext([]) as log:
            for start in range(0, len(examples), batch_size):
                features = examples[start : start + batch_size]
                batch = move(head.collate(features, tokenizer), device)
                predictions += head.predict(view, batch)
                references += head.references(batch)
    finally:
        model.train(was_training)
    weights = torch.cat(log) if log else None
    if gather is not None:
        predictions, references = gather(predictions), gather(references)
        shares = [w for w in gather([weights]) if w is not None]
        weights = torch.cat(shares) if shares else None
    scores, intervals = scores_and_intervals(metrics, predictions, references, resamples=resamples, seed=task_seed(run_seed, task))
    return TaskEvaluation(scores, predictions, references, weights, intervals=intervals)


def evaluate(
    model: MultiTaskModel,
    tasks: Mapping[str, TaskData],
    metrics: Mapping[str, Sequence[Metric]],
    *,
    combiner: str | None,
    batch_size: int,
    device: torch.device,
    only: Sequence[str] | None = None,
    split: Literal["test", "validation"] = "test",
    shard: tuple[int, int] = (0, 1),
    gather: Gather | None = None,
    resamples: int = 0,
    run_seed: int = 0,
) -> dict[str, TaskEvaluation]:
    """Predict every example of each task's held-out (or validation) split and score it with the task's metrics
    (`shard`, `gather`, `resamples`, `run_seed`: see evaluate_examples)."""
    results: dict[str, TaskEvaluation] = {}
    for name, data in tasks.items():
        if only is not None and name not in only:
            continue
        examples = data.eval if split == "test" else data.validation
        if examples is None:
            raise MtkitError(f"task {name!r} has no validation split; set tasks.{name}.dataset.validation_size in the recipe")
        results[name] = evaluate_examples(
            model, name, examples, metrics[name], combiner=combiner, batch_size=batch_size, device=device, shard=shard, gather=gather,
            resamples=resamples, run_seed=run_seed,
        )
    return results
