"""`gating`: a learned gate per site computing per-token adapter weights from the site input."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mtkit import AdapterGroup, Combiner, ForwardContext, Site

from ._routing import add_own_bias, add_weighted, per_sample, record_site_average, scatter_columns, site_columns, task_rows
from .config import GatingCombinerConfig


class GatingCombiner(Combiner):
    """A gate per site maps each token's site input to weights over adapters (AdapterFusion's gating).

    Gates start at zero, so softmax gates begin as the average of the adapters and sigmoid gates
    at half of each adapter's delta.
    """

    name = "gating"
    config_class = GatingCombinerConfig
    config: GatingCombinerConfig

    def __init__(
        self,
        config: GatingCombinerConfig,
        *,
        adapter_names: Sequence[str],
        task_names: Sequence[str],
        sites: Mapping[str, Site],
        hidden_size: int,
    ) -> None:
        super().__init__(config, adapter_names=adapter_names, task_names=task_names, sites=sites, hidden_size=hidden_size)
        k = max(1, len(self.adapter_names))
        copies = len(self.task_names) if config.per_task else 1
        self.gates = nn.ModuleDict()  # site -> one gate, or one per task (index = task id)
        for name, site in sites.items():
            gates = nn.ModuleList(nn.Linear(site.in_features, k) for _ in range(copies))
            for gate in gates:
                nn.init.zeros_(gate.weight)
                nn.init.zeros_(gate.bias)
            self.gates[name.replace(".", "__")] = gates
        # per_task with own_adapter_init: per site, each task's learned bias towards its own adapter.
        self.own = nn.ParameterDict()
        if config.own_adapter_init:
            for name in sites:
                self.own[name.replace(".", "__")] = nn.Parameter(torch.full((copies,), config.own_adapter_init))
        self.last_site = list(sites)[-1] if sites else ""

    def weights(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor | None:
        return self._weights(site, x, list(range(len(self.adapter_names))), ctx)

    def _weights(self, site: str, x: Tensor, columns: list[int], ctx: ForwardContext) -> Tensor:
        key = site.replace(".", "__")
        gates = self.gates[key]
        if not self.config.per_task:
            logits = gates[0](x)
        else:  # each sample through its own task's gate
            logits = x.new_empty(*x.shape[:-1], gates[0].out_features)
            for task, rows in task_rows(ctx, x.device):
                logits[rows] = gates[task](x[rows])
            if key in self.own and ctx.oracle_weights is not None:
                assert ctx.task_ids is not None
                logits = add_own_bias(logits, self.own[key][ctx.task_ids.to(x.device)], ctx.oracle_weights)
        logits = logits[..., columns]  # (B, T, K_site): only the adapters present at this site
        gated = logits.softmax(-1) if self.config.activation == "softmax" else torch.sigmoid(logits)
        weights = scatter_columns(gated, columns, len(self.adapter_names))  # (B, T, K)
        if not self.training:
            record_site_average(ctx, "gating", site, self.last_site, per_sample(weights, ctx.attention_mask))
        return weights

    def combine(self, site: str, x: Tensor, y: Tensor, groups: Sequence[AdapterGroup], ctx: ForwardContext) -> Tensor:
        weights = self._weights(site, x, site_columns(groups), ctx)
        return add_weighted(site, x, y, groups, weights, ctx)
