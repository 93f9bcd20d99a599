"""`gating`: a learned gate per site computing per-token adapter weights from the site input."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtkit import Combiner, CombinerSetup, ForwardContext, SiteAdapters, site_key

from ._routing import add_own_bias, task_rows
from .config import GatingCombinerConfig


class GatingCombiner(Combiner):
    """A gate per site maps each token's site input to weights over adapters (AdapterFusion's gating).

    Gates start at zero, so softmax gates begin as the average of the adapters and sigmoid gates
    at half of each adapter's delta.
    """

    name = "gating"
    config_class = GatingCombinerConfig
    config: GatingCombinerConfig

    def __init__(self, config: GatingCombinerConfig, *, setup: CombinerSetup) -> None:
        super().__init__(config, setup=setup)
        k = max(1, self.num_adapters)
        copies = len(self.task_names) if config.per_task else 1
        self.gates = nn.ModuleDict()  # site -> one gate, or one per task (index = task id)
        for name, site in setup.sites.items():
            gates = nn.ModuleList(nn.Linear(site.in_features, k) for _ in range(copies))
            for gate in gates:
                nn.init.zeros_(gate.weight)
                nn.init.zeros_(gate.bias)
            self.gates[site_key(name)] = gates
        # per_task with own_adapter_init: per site, each task's learned bias towards its own adapter.
        self.own = nn.ParameterDict()
        if config.own_adapter_init:
            for name in setup.sites:
                self.own[site_key(name)] = nn.Parameter(torch.full((copies,), config.own_adapter_init))

    def combine(self, site: str, x: Tensor, y: Tensor, adapters: SiteAdapters, ctx: ForwardContext) -> Tensor:
        weights = self.gate_weights(site, x, adapters, ctx)
        self.record(weights, ctx)
        return adapters.apply(x, y, weights, ctx)

    def gate_weights(self, site: str, x: Tensor, adapters: SiteAdapters, ctx: ForwardContext) -> Tensor:
        """Per-token weights (B, T, K) at `site` over the adapters attached there (zeros at the others)."""
        key = site_key(site)
        gates = self.gates[key]
        if not self.config.per_task:
            logits = gates[0](x)  # (B, T, K)
        else:  # each sample through its own task's gate
            logits = x.new_empty(*x.shape[:-1], gates[0].out_features)
            for task, rows in task_rows(ctx, x.device):
                logits[rows] = gates[task](x[rows])
            if key in self.own:
                assert ctx.task_ids is not None
                logits = add_own_bias(logits, self.own[key][ctx.task_ids.to(x.device)], ctx.own_adapter_weights().to(x.device))
        present = adapters.present(x.device)  # only the adapters attached at this site share the weight
        if self.config.activation == "softmax":
            return logits.masked_fill(~present, float("-inf")).softmax(-1)
        return torch.sigmoid(logits) * present
