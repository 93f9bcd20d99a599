"""`cat`: learned scalar weights per site over the frozen adapters (CAT, from LoRA Soups, Prabhakar et al. 2024).

At each site the adapters' deltas are summed, each times its own learned scalar: for LoRAs, the concatenation
[a_1 B_1 ... a_K B_K][A_1; ...; A_K] of the library. The weights are the same for every input; they train on the
target task's data in an ordinary phase (`train = ["combiner", ...]`) with the library frozen.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtkit import Combiner, CombinerSetup, ForwardContext, site_key

from .config import CatCombinerConfig


class CatCombiner(Combiner):
    """A learned weight per adapter and site, the same for every input (CAT / LoRA soups)."""

    name = "cat"
    config_class = CatCombinerConfig
    config: CatCombinerConfig

    def __init__(self, config: CatCombinerConfig, *, setup: CombinerSetup) -> None:
        super().__init__(config, setup=setup)
        k = max(1, self.num_adapters)
        start = 1.0 / k if config.init is None else config.init
        self.site_weights = nn.ParameterDict({site_key(name): nn.Parameter(torch.full((k,), start)) for name in setup.sites})  # site -> (K,)

    def weights(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor | None:
        return self.site_weights[site_key(site)].to(x.dtype).expand(x.shape[0], -1)  # (B, K)
