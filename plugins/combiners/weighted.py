"""`weighted`: learned weights over adapters (softmax of parameters), global or one set per task."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtkit import Combiner, CombinerSetup, ForwardContext

from ._routing import add_own_bias
from .config import WeightedCombinerConfig


class WeightedCombiner(Combiner):
    """Learned weights over adapters: softmax of parameters, one set or one per task.

    The logits start at zero, so the combination starts as the plain average of the adapters.
    """

    name = "weighted"
    config_class = WeightedCombinerConfig
    config: WeightedCombinerConfig

    def __init__(self, config: WeightedCombinerConfig, *, setup: CombinerSetup) -> None:
        super().__init__(config, setup=setup)
        rows = len(self.task_names) if config.per_task else 1
        self.logits = nn.Parameter(torch.zeros(rows, max(1, self.num_adapters)))  # (tasks or 1, K)
        # per_task with own_adapter_init: each task's learned bias towards its own adapter's logit.
        self.own = nn.Parameter(torch.full((rows,), config.own_adapter_init)) if config.own_adapter_init else None
        self._weights: Tensor | None = None

    def begin(self, ctx: ForwardContext) -> None:
        # The same at every site: decided once per forward, before the pass.
        if self.config.per_task:
            assert ctx.task_ids is not None, "the model always passes task ids"
            task_ids = ctx.task_ids.to(self.logits.device)
            logits = self.logits[task_ids]  # (B, K)
            if self.own is not None:
                logits = add_own_bias(logits, self.own[task_ids], ctx.own_adapter_weights().to(logits.device))
            self._weights = logits.softmax(-1)
        else:
            self._weights = self.logits.softmax(-1).expand(ctx.batch_size, -1)

    def weights(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor | None:
        return self._weights
