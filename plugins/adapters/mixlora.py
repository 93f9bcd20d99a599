"""`mixlora`: N LoRA experts per site and a token router that applies the top k of them (MixLoRA).

At a site with input x, each token t gets router probabilities p = softmax(W_r x_t) over the experts and the
delta sum_{e in top-k(p)} (p_e / sum_top-k p) B_e A_e x_t * alpha / rank. Each expert computes only the tokens
routed to it (`_experts.Dispatch`), so the cost follows k, not N. While training, the router's Switch-style
load-balance loss is added as the auxiliary loss `expert_balance` (mean over the sites), which phases weight
by name: `aux_losses = { expert_balance = 0.01 }`.

The routing depends on x, so the delta has no factored form and cannot be merged into the base weights, and
PEFT has no format for it: `mtkit export` and `merge_adapters` refuse it by name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkit import Adapter, ForwardContext, Site

from . import _experts
from .config import MixLoraAdapterConfig


def init_router(num_experts: int, in_features: int) -> Tensor:
    """A router's weight (N, Din), nn.Linear's default initialisation."""
    weight = torch.empty(num_experts, in_features)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    return weight


def init_up(shape: tuple[int, ...], init: str) -> Tensor:
    """Up-projections: zeros (the adapted model equals the base) or small random values (tests)."""
    up = torch.zeros(shape)
    if init == "random":
        nn.init.normal_(up, std=0.02)
    return up


class MixLoraAdapter(Adapter):
    """N LoRA experts per site, the top k of them chosen per token by a learned router (MixLoRA)."""

    name = "mixlora"
    config_class = MixLoraAdapterConfig
    config: MixLoraAdapterConfig

    def __init__(self, config: MixLoraAdapterConfig, *, sites: Mapping[str, Site], context_size: int) -> None:
        super().__init__(config, sites=sites, context_size=context_size)
        n, r = config.num_experts, config.rank
        self.scale = config.alpha / r
        self.top_k = config.top_k if config.top_k is not None and config.top_k < n else None  # k = N is dense
        self.mixlora_a = nn.ParameterDict()
        self.mixlora_b = nn.ParameterDict()
        self.mixlora_router = nn.ParameterDict()
        for name, site in sites.items():
            a = torch.empty(n, r, site.in_features)
            for expert in a:
                nn.init.kaiming_uniform_(expert, a=math.sqrt(5))  # each expert as a LoRA's A
            key = self.site_key(name)
            self.mixlora_a[key] = nn.Parameter(a)
            self.mixlora_b[key] = nn.Parameter(init_up((n, site.out_features, r), config.init))
            self.mixlora_router[key] = nn.Parameter(init_router(n, site.in_features))

    def weights(self, site: str) -> tuple[Tensor, Tensor, Tensor]:
        """(A (N, R, Din), B (N, Dout, R), router (N, Din)) at a site."""
        key = self.site_key(site)
        return self.mixlora_a[key], self.mixlora_b[key], self.mixlora_router[key]

    def routed(self, site: str, x: Tensor, mask: Tensor | None, sample_weights: Tensor | None = None) -> Tensor:
        """The delta for x (B, T, Din), times `sample_weights` (B,) or (B, T) if given; `mask` (B, T) marks the tokens
        the balance loss counts."""
        a, b, router = self.weights(site)
        inputs, routing, weights = _experts.routed_tokens(self, x, mask, router, self.top_k, self.config.dropout, self.scale, sample_weights)
        if routing.index is None:
            out = _experts.dense_products(F.linear(inputs, a.flatten(0, 1).to(inputs.dtype)), weights, b)
        else:
            out = _experts.expert_products(_experts.Dispatch(routing.index, len(a)), inputs, weights, a, b)
        return out.view(*x.shape[:-1], -1)

    def delta(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor:
        return self.routed(site, x, ctx.attention_mask)

    @classmethod
    def mix(
        cls, adapters: Sequence[Adapter], site: str, x: Tensor, y: Tensor, weights: Tensor, ctx: ForwardContext
    ) -> Tensor:
        """Each mixture on the samples that weight it (oracle routing: its task's samples) only."""
        return _experts.mix_by_rows(adapters, x, y, weights, ctx.attention_mask, lambda m, rows, mask, w: m.routed(site, rows, mask, w))  # type: ignore[attr-defined]
