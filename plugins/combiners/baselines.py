"""Ablation baselines: `uniform` (equal weights) and `random` routing."""

from __future__ import annotations

import torch
from torch import Tensor

from mtkit import Combiner, CombinerSetup, ForwardContext

from ._routing import one_hot_top_k
from .config import RandomCombinerConfig, UniformCombinerConfig


class UniformCombiner(Combiner):
    """Every adapter gets the same weight 1/K (an ablation baseline)."""

    name = "uniform"
    config_class = UniformCombinerConfig

    def weights(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor | None:
        k = max(1, self.num_adapters)
        return torch.full((x.shape[0], k), 1.0 / k, device=x.device)


class RandomCombiner(Combiner):
    """Each sample goes to adapters drawn uniformly at random, once per forward (an ablation baseline)."""

    name = "random"
    config_class = RandomCombinerConfig
    config: RandomCombinerConfig

    def __init__(self, config: RandomCombinerConfig, *, setup: CombinerSetup) -> None:
        super().__init__(config, setup=setup)
        self.k = min(config.top_k, max(1, self.num_adapters))
        self._drawn: Tensor | None = None

    def begin(self, ctx: ForwardContext) -> None:
        # Uniform scores through topk draw k distinct adapters per sample, once per forward, before the pass (torch's
        # global RNG, which the trainer reseeds every step, so runs stay reproducible).
        scores = torch.rand(ctx.batch_size, max(1, self.num_adapters), device=ctx.device)
        self._drawn = one_hot_top_k(scores, self.k)

    def weights(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor | None:
        return self._drawn
