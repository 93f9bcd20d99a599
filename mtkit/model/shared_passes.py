"""Backbone passes shared by the heads of several tasks that read the same tokens.

Predicting every task's answer for an input runs each task's head over it. When the model's outputs depend on the
input alone (`MultiTaskModel.task_independent`: a learned router with adapters that ignore task ids), heads whose
batches hold the same tokens get the same backbone output, so the pass runs once and the others reuse it, with the
routing it recorded. Otherwise every head runs its own pass, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mtkit.api.interfaces import ROUTING_MASK, BackboneOutput
from mtkit.model.multitask import MultiTaskModel, TaskView

__all__ = ["SharedPasses"]


@dataclass
class _Pass:
    input_ids: Tensor
    attention_mask: Tensor
    pool_mask: Tensor
    output: BackboneOutput
    routing: list[Tensor]  # what the running combiner recorded for the pass, (B, K) per forward


class SharedPasses:
    """The backbone passes of one prediction call; `view(task)` is what a task's head predicts through (`share=False`:
    one pass per head)."""

    def __init__(self, model: MultiTaskModel, *, share: bool = True) -> None:
        self.model = model
        self.shared = share and model.task_independent
        self.passes: list[_Pass] = []
        self.runs = 0  # backbone passes run (the rest were reused)

    def view(self, task: str) -> SharingView:
        return SharingView(self, task)

    def output(self, view: SharingView, batch: Mapping[str, Any]) -> tuple[BackboneOutput, list[Tensor]]:
        """The backbone output for `batch` under `view`'s task, and the routing recorded for it."""
        ids, mask = batch["input_ids"], batch["attention_mask"]
        pool = batch.get(ROUTING_MASK, mask)
        if self.shared:
            for done in self.passes:
                if done.input_ids.shape == ids.shape and all(
                    torch.equal(a, b) for a, b in ((done.input_ids, ids), (done.attention_mask, mask), (done.pool_mask, pool))
                ):
                    return done.output, done.routing
        with self.model.recording_routing() as log:
            output = self.model.run_backbone(ids, mask, view.task_ids(batch), pool)
        self.runs += 1
        if self.shared:
            self.passes.append(_Pass(ids, mask, pool, output, list(log)))
        return output, list(log)


class SharingView(TaskView):
    """A task's view of the model whose backbone passes go through `SharedPasses`; `routing` collects the routing
    weights of the passes its head read, in order."""

    def __init__(self, passes: SharedPasses, task: str) -> None:
        super().__init__(passes.model, task)
        self.passes = passes
        self.routing: list[Tensor] = []

    def backbone_output(self, batch: Mapping[str, Any]) -> BackboneOutput:
        output, routing = self.passes.output(self, batch)
        self.routing.extend(routing)
        return output

    def generate(self, batch: Mapping[str, Any], **kwargs: Any) -> Tensor:
        with self.model.recording_routing() as log:
            tokens = super().generate(batch, **kwargs)
        self.routing.extend(log)
        return tokens
