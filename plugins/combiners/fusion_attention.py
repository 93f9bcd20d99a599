"""`fusion_attention` (AdapterFusion): per site, attention from the site output over the adapters' deltas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mtkit import AdapterGroup, Combiner, ForwardContext, Site

from ._routing import add_own_bias, per_sample, record_site_average, scatter_columns, site_columns, task_rows
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

    def forward(self, y: Tensor, deltas: Tensor, temperature: float, own: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """y (B, T, D), deltas (B, T, K, D), own (B, K): 1 at each sample's own adapter -> (fused delta (B, T, D), attention (B, T, K))."""
        query = self.query(y)  # (B, T, P)
        keys = self.key(deltas)  # (B, T, K, P)
        scores = torch.einsum("btp,btkp->btk", query, keys)
        if self.own is not None and own is not None:
            scores = add_own_bias(scores, self.own, own)
        scores = scores / temperature
        attention = scores.softmax(-1)
        values = deltas if self.value is None else self.value(deltas)
        return torch.einsum("btk,btkd->btd", attention, values), attention


def value_identity_distance(fusion: FusionAttention) -> Tensor:
    """Sum of squared differences between the value projection and the identity."""
    assert fusion.value is not None
    weight = fusion.value.weight
    return (weight - torch.eye(weight.shape[0], device=weight.device, dtype=weight.dtype)).pow(2).sum()


class FusionAttentionCombiner(Combiner):
    """AdapterFusion over any adapter family: it only needs each family's batched `stack` of deltas."""

    name = "fusion_attention"
    config_class = FusionAttentionCombinerConfig
    config: FusionAttentionCombinerConfig
    aux_loss_names = ("value_identity",)

    def __init__(
        self,
        config: FusionAttentionCombinerConfig,
        *,
        adapter_names: Sequence[str],
        task_names: Sequence[str],
        sites: Mapping[str, Site],
        hidden_size: int,
    ) -> None:
        super().__init__(config, adapter_names=adapter_names, task_names=task_names, sites=sites, hidden_size=hidden_size)
        self.temperature = config.temperature
        copies = len(self.task_names) if config.per_task else 1
        self.fusions = nn.ModuleDict(
            {
                name.replace(".", "__"): nn.ModuleList(
                    FusionAttention(site.out_features, config.projection_dim or site.out_features, config.value_projection, config.own_adapter_init)
                    for _ in range(copies)
                )
                for name, site in sites.items()
            }
        )
        self.last_site = list(sites)[-1] if sites else ""

    def set_temperature(self, temperature: float) -> None:
        self.temperature = temperature

    def weights(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor | None:
        """Attention weights depend on the deltas; `combine` computes them (this is for inspection)."""
        return None

    def combine(self, site: str, x: Tensor, y: Tensor, groups: Sequence[AdapterGroup], ctx: ForwardContext) -> Tensor:
        deltas = torch.cat([group.stack(site, x, y, ctx) for group in groups], dim=2)  # (B, T, K_site, D)
        fusions = self.fusions[site.replace(".", "__")]
        if not self.config.per_task:
            fused, attention = fusions[0](y, deltas, self.temperature)
        else:  # each sample through its own task's fusion (AdapterFusion's per-target-task parameters)
            fused = torch.empty_like(y)
            attention = deltas.new_empty(deltas.shape[:3])
            own = ctx.oracle_weights[:, site_columns(groups)] if ctx.oracle_weights is not None else None  # (B, K_site)
            for task, rows in task_rows(ctx, y.device):
                fused[rows], attention[rows] = fusions[task](y[rows], deltas[rows], self.temperature, None if own is None else own[rows])
        if self.training and self.config.value_projection:
            # AdapterFusion's regulariser: squared distance of each value matrix from the identity, so
            # the fusion mixes the adapters' deltas rather than learning a new projection of them.
            ctx.add_aux_loss("value_identity", torch.stack([value_identity_distance(fusion) for fusion in fusions]).sum())
        weights = scatter_columns(per_sample(attention, ctx.attention_mask), site_columns(groups), len(self.adapter_names))
        if not self.training:
            record_site_average(ctx, "fusion_attention", site, self.last_site, weights)
        return y + fused.to(y.dtype)
