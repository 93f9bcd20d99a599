"""Ablation baselines: `uniform` (equal weights) and `random` routing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from mtkit import Combiner, ForwardContext, Site

from ._routing import one_hot_top_k
from .config import RandomCombinerConfig, UniformCombinerConfig


class UniformCombiner(Combiner):
    """Every adapter gets the same weight 1/K (an ablation baseline)."""

    name = "uniform"
    config_class = UniformCombinerConfig

    def weights(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor | None:
        if "uniform" not in ctx.cache:
            k = max(1, len(self.adapter_names))
            ctx.cache["uniform"] = torch.full((x.shape[0], k), 1.0 / k, device=x.device, dtype=torch.float32)
            if not self.training:
                ctx.record_routing(ctx.cache["uniform"])
        weights: Tensor = ctx.cache["uniform"]
        return weights


class RandomCombiner(Combiner):
    """Each sample goes to adapters drawn uniformly at random, once per forward (an ablation baseline)."""

    name = "random"
    config_class = RandomCombinerConfig
    config: RandomCombinerConfig

    def __init__(
        self,
        config: RandomCombinerConfig,
        *,
        adapter_names: Sequence[str],
        task_names: Sequence[str],
        sites: Mapping[str, Site],
        hidden_size: int,
    ) -> None:
        super().__init__(config, adapter_names=adapter_names, task_names=task_names, sites=sites, hidden_size=hidden_size)
        self.k = min(config.top_k, max(1, len(self.adapter_names)))

    def weights(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor | None:
        if "random" not in ctx.cache:
            # Uniform scores through topk draw k distinct adapters per sample (torch's global RNG,
            # which the trainer reseeds every step, so runs stay reproducible).
            scores = torch.rand(x.shape[0], max(1, len(self.adapter_names)), device=x.device)
            ctx.cache["random"] = one_hot_top_k(scores, self.k)
            if not self.training:
                ctx.record_routing(ctx.cache["random"])
        weights: Tensor = ctx.cache["random"]
        return weights
