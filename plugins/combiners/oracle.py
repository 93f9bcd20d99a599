"""`oracle`: the task id of each sample picks its adapter."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from mtkit import Combiner, CombinerSetup, ForwardContext

from .config import OracleCombinerConfig


class OracleCombiner(Combiner):
    """Each sample's task id picks its task's adapter (batches may mix tasks).

    It owns the task -> adapter table: each task's own adapter, unless a phase maps a task elsewhere
    (`phases.N.task_adapters`). The weights carry no gradient, so only the adapters some sample of the batch uses are
    computed.
    """

    name = "oracle"
    config_class = OracleCombinerConfig

    def __init__(self, config: OracleCombinerConfig, *, setup: CombinerSetup) -> None:
        super().__init__(config, setup=setup)
        self.register_buffer("task_columns", torch.empty(0, dtype=torch.long), persistent=False)
        self.route_tasks({task: setup.task_adapters.get(task) for task in self.task_names})
        self._weights: Tensor | None = None  # this forward's one-hot rows, made at its first site (decoding steps reuse them)

    def begin(self, ctx: ForwardContext) -> None:
        self._weights = None

    def route_tasks(self, task_adapters: Mapping[str, str | None]) -> None:
        columns = [self.adapter_names.index(a) if a is not None else -1 for a in (task_adapters.get(t) for t in self.task_names)]
        self.task_columns = torch.tensor(columns, dtype=torch.long, device=self.task_columns.device)

    def task_adapters(self) -> dict[str, str | None]:
        return {t: self.adapter_names[c] if c >= 0 else None for t, c in zip(self.task_names, self.task_columns.tolist(), strict=True)}

    def weights(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor | None:
        if self._weights is None or self._weights.device != x.device:  # once per forward (and generate call)
            assert ctx.task_ids is not None, "the model always passes each sample's task id"
            columns = self.task_columns.to(ctx.task_ids.device)[ctx.task_ids]
            k = max(self.num_adapters, 1)
            self._weights = (F.one_hot(columns.clamp_min(0), k).to(torch.float32) * (columns >= 0).unsqueeze(-1)).to(x.device)
        return self._weights
