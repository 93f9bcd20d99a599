"""A phase's `fit_combiner`: the running combiner's own training routine (`mtkit.FitsItself`), with the phase's data.

The routine learns into the combiner's parameters and persistent buffers, which the phase-end checkpoint and the
run's model.safetensors carry; its summary goes to the metrics log and to `combiner_fit.json` (report.md shows it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from mtkit.api.fitting import FitData, FitsItself, TaskBatch
from mtkit.recipe.resolve import COMBINER_PATH, ResolvedPhase
from mtkit.rundir.evaluate import move
from mtkit.rundir.report import COMBINER_FIT

if TYPE_CHECKING:
    from mtkit.train.trainer import Trainer

__all__ = ["fit_combiner"]


def fit_combiner(trainer: Trainer, resolved: ResolvedPhase, seed: int, global_step: int) -> None:
    """Run the recipe's combiner's routine for a phase (a combiner without one is skipped, with a log line: an ablation
    that swaps the combiner keeps its phases)."""
    model, built, phase = trainer.model, trainer.built, resolved.section
    combiner = model.combiners[COMBINER_PATH]
    if not isinstance(combiner, FitsItself):
        trainer._log({"event": "combiner_fit", "phase": phase.name, "skipped": f"combiner {combiner.name!r} has no training routine"}, global_step)
        return
    recipe, device = trainer.recipe, trainer.accelerator.device
    batch_size = phase.batch_size or recipe.run.batch_size
    tokenizer = model.backbone.tokenizer

    def batches(task: str, limit: int | None) -> list[TaskBatch]:
        train = built.tasks[task].train
        count = len(train) if limit is None else min(limit, len(train))
        return [
            (task, move(model.heads[task].collate(train[list(range(start, min(start + batch_size, count)))], tokenizer), device))
            for start in range(0, count, batch_size)
        ]

    def loss(pieces: Sequence[TaskBatch]) -> Tensor:
        with model.use_combiner(COMBINER_PATH):
            losses, _ = model(list(pieces))
        return sum(losses.values(), torch.zeros((), device=device))

    served: dict[str, list[str]] = {name: [] for name in model.adapter_names}
    for task, adapter in resolved.task_adapters.items():
        if adapter is not None:
            served[adapter].append(task)
    data = FitData(
        phase=phase.name,
        tasks=tuple(recipe.phase_tasks(phase)),
        adapter_tasks={name: tuple(tasks) for name, tasks in served.items()},
        seed=seed,
        device=device,
        batch_size=batch_size,
        batches=batches,
        loss=loss,
        log=lambda record: trainer._log({"event": "combiner_fit", "phase": phase.name, **record}, global_step),
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
    trainer.trained |= {f"combiner.{n}" for n, p in combiner.named_parameters() if not torch.equal(before[n], p.detach())}
    for p in model.parameters():
        p.grad = None
    model.requires_grad_(False)
    if trainer.main:
        path = trainer.run_dir.path / COMBINER_FIT
        fits: dict[str, Any] = trainer.run_dir.read_json(COMBINER_FIT) if path.is_file() else {}
        fits[phase.name] = {"combiner": combiner.name, **summary}
        trainer.run_dir.write_json(COMBINER_FIT, fits)
    trainer._log({"event": "combiner_fit", "phase": phase.name, "done": True}, global_step)
