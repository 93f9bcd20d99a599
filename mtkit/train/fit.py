"""A phase's `fit_combiner`: the recipe's combiner's own training routine (`mtkit.FitsItself`), with the phase's data.

The routine learns into the combiner's parameters and persistent buffers, which the phase-end checkpoint and the
run's model.safetensors carry; the trainer logs its summary and writes it to `combiner_fit.json` (report.md shows it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mtkit.api.fitting import FitData, FitsItself, TaskBatch
from mtkit.data.tasks import TaskData
from mtkit.model.multitask import MultiTaskModel
from mtkit.recipe.resolve import COMBINER_PATH, ResolvedPhase
from mtkit.rundir.evaluate import move

__all__ = ["FitOutcome", "fit_combiner", "forward_texts"]


@dataclass
class FitOutcome:
    """What a routine did: its JSON summary (None: the combiner has no routine) and the parameters it changed."""

    combiner: str
    summary: dict[str, Any] | None
    changed: set[str]


def fit_combiner(
    model: MultiTaskModel,
    tasks: Mapping[str, TaskData],
    phase: ResolvedPhase,
    phase_tasks: Sequence[str],
    *,
    seed: int,
    device: torch.device,
    batch_size: int,
    max_length: int,
    log: Callable[[dict[str, Any]], None],
) -> FitOutcome:
    """Run the recipe's combiner's routine for `phase` with the training data of `tasks`, the data the phase may read
    (a combiner without one does nothing: an ablation that swaps the combiner keeps its phases)."""
    combiner = model.combiners[COMBINER_PATH]
    name = type(combiner).name
    if not isinstance(combiner, FitsItself):
        return FitOutcome(name, None, set())
    tokenizer = model.backbone.tokenizer

    def batches(task: str, limit: int | None) -> list[TaskBatch]:
        train = tasks[task].train
        count = len(train) if limit is None else min(limit, len(train))
        return [
            (task, move(model.heads[task].collate(train[list(range(start, min(start + batch_size, count)))], tokenizer), device))
            for start in range(0, count, batch_size)
        ]

    def loss(pieces: Sequence[TaskBatch]) -> Tensor:
        with model.use_combiner(COMBINER_PATH):
            losses, _ = model(list(pieces))
        return sum(losses.values(), torch.zeros((), device=device))

    served: dict[str, list[str]] = {adapter: [] for adapter in model.adapter_names}
    for task, adapter in phase.task_adapters.items():
        if adapter is not None and task in tasks:  # a held-out task only as far as the phase may read it
            served[adapter].append(task)
    data = FitData(
        phase=phase.name,
        tasks=tuple(phase_tasks),
        adapter_tasks={adapter: tuple(names) for adapter, names in served.items()},
        seed=seed,
        device=device,
        batch_size=batch_size,
        batches=batches,
        loss=loss,
        forward_texts=lambda texts: forward_texts(model, texts, batch_size=batch_size, max_length=max_length, device=device),
        log=log,
    )
    # The routine turns on gradients for what it trains; nothing else may collect gradients a later phase would apply.
    was_training = model.training
    model.requires_grad_(False)
    model.eval()
    before = {n: p.detach().clone() for n, p in combiner.named_parameters()}
    try:
        summary = combiner.fit(data)
    finally:
        model.train(was_training)
    changed = {f"{COMBINER_PATH}.{n}" for n, p in combiner.named_parameters() if not torch.equal(before[n], p.detach())}
    for p in model.parameters():
        p.grad = None
    model.requires_grad_(False)
    return FitOutcome(name, summary, changed)


def forward_texts(model: MultiTaskModel, texts: Sequence[str], *, batch_size: int, max_length: int, device: torch.device) -> None:
    """Backbone passes over raw input texts (tokenised with the backbone's tokenizer, cut at `max_length`) under the
    recipe's combiner, `batch_size` at a time: what a routine that reads representations of texts runs."""
    tokenizer = model.backbone.tokenizer
    with model.use_combiner(COMBINER_PATH):
        for start in range(0, len(texts), batch_size):
            encoded = tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            ids, mask = encoded["input_ids"].to(device), encoded["attention_mask"].to(device)
            model.run_backbone(ids, mask, torch.zeros(ids.shape[0], dtype=torch.long, device=device))
