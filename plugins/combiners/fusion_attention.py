"""`fusion_attention` (AdapterFusion): per site, attention from the site output over the adapters' deltas."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtkit import Combiner, CombinerSetup, ForwardContext, SiteAdapters, SiteDeltas, site_key

from ._routing import add_own_bias, task_rows
from .config import FusionAttentionCombinerConfig


class FusionAttention(nn.Module):
    """Query from the site output, keys and values from each adapter's delta, softmax over adapters.

    The query starts at zero and the value projection at the identity, so a fresh fusion is the
    plain average of the adapters' deltas (AdapterFusion initialises its value matrix the same way).
    """

    def __init__(self, size: int, projection_dim: int, value_projection: bool, own_adapter_init: float = 0.0) -> None:
        super().__init__()
        # A learned score bias towards the sample's own adapter (per-task fusion with own_adapter_init).
        self.own = nn.Parameter(torch.tensor(float(own_adapter_init))) if own_adapter_init else None
        self.query = nn.Linear(size, projection_dim)
        self.key = nn.Linear(size, projection_dim)
        nn.init.zeros_(self.query.weight)
        nn.init.zeros_(self.query.bias)
        self.value: nn.Linear | None = None
        if value_projection:
            self.value = nn.Linear(size, size, bias=False)
            nn.init.eye_(self.value.weight)

    def forward(self, y: Tensor, deltas: SiteDeltas, temperature: Tensor, own: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """y (B, T, D), the site's deltas, own (B, K): 1 at each sample's own adapter -> (fused delta (B, T, D), attention (B, T, K)).

        The key and value maps apply to the deltas through `SiteDeltas`, which folds them into the adapters' output
        matrices where the family has a factored form: the (B, T, K, D) keys and values are never formed there.
        """
        keys = deltas.project(self.key.weight, self.key.bias)
        scores = keys.dots(y, self.query.weight, self.query.bias)  # (B, T, K): query(y) . key(delta_k)
        if self.own is not None and own is not None:
            scores = add_own_bias(scores, self.own, own)
        scores = scores / temperature
        attention = scores.softmax(-1)
        values = deltas if self.value is None else deltas.project(self.value.weight)
        return values.weighted_sum(attention), attention


def value_identity_distance(fusion: FusionAttention) -> Tensor:
    """Sum of squared differences between the value projection and the identity."""
    assert fusion.value is not None
    weight = fusion.value.weight
    return (weight - torch.eye(weight.shape[0], device=weight.device, dtype=weight.dtype)).pow(2).sum()


class FusionAttentionCombiner(Combiner):
    """AdapterFusion over any adapter family, computed in the adapters' inner space where their family has a factored form.

    Over LoRA or bottleneck adapters a fusion costs about one adapter of rank sum(R_k) plus K scores per token;
    a family without a factored form (hyper_lora) has its deltas materialised, at (B, T, K, D).
    """

    name = "fusion_attention"
    config_class = FusionAttentionCombinerConfig
    config: FusionAttentionCombinerConfig

    def __init__(self, config: FusionAttentionCombinerConfig, *, setup: CombinerSetup) -> None:
        super().__init__(config, setup=setup)
        self.temperature.fill_(config.temperature)
        copies = len(self.task_names) if config.per_task else 1
        self.fusions = nn.ModuleDict(
            {
                site_key(name): nn.ModuleList(
                    FusionAttention(site.out_features, config.projection_dim or site.out_features, config.value_projection, config.own_adapter_init)
                    for _ in range(copies)
                )
                for name, site in setup.sites.items()
            }
        )

    def begin(self, ctx: ForwardContext) -> None:
        if self.training and self.config.value_projection:
            # AdapterFusion's regulariser: squared distance of each value matrix from the identity, so
            # the fusion mixes the adapters' deltas rather than learning a new projection of them.
            distances = [value_identity_distance(fusion) for fusions in self.fusions.values() for fusion in fusions]
            if distances:
                self.add_aux_loss("value_identity", torch.stack(distances).sum())

    def combine(self, site: str, x: Tensor, y: Tensor, adapters: SiteAdapters, ctx: ForwardContext) -> Tensor:
        deltas = adapters.deltas(x, y, ctx)
        fusions = self.fusions[site_key(site)]
        temperature = self.temperature
        if not self.config.per_task:
            fused, attention = fusions[0](y, deltas, temperature)
        else:  # each sample through its own task's fusion (AdapterFusion's per-target-task parameters)
            fused = torch.empty_like(y)
            attention = y.new_empty(*y.shape[:2], deltas.num_adapters)
            own = ctx.own_adapter_weights().to(y.device)[:, adapters.columns]  # (B, K_site)
            for task, rows in task_rows(ctx, y.device):
                fused[rows], attention[rows] = fusions[task](y[rows], deltas.rows(rows), temperature, own[rows])
        self.record(adapters.to_columns(attention), ctx)
        return y + fused.to(y.dtype)
