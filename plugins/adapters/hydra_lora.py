"""`hydra_lora`: one shared down-projection A and N up-projection heads B per site, mixed per token (HydraLoRA).

At a site with input x, each token t gets router probabilities p = softmax(W_r x_t) over the heads and the delta
sum_e w_e B_e (A x_t) * alpha / rank, with w = p (dense, the HydraLoRA design) or the top k of p renormalised.
A x is computed once for every head; top-k heads compute only the tokens routed to them. While training, the
router's Switch-style load-balance loss is added as the auxiliary loss `expert_balance` (mean over the sites).

The routing depends on x, so the delta cannot be merged into the base weights, and PEFT has no format for it:
`mtkit export` and `merge_adapters` refuse it by name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkit import Adapter, ForwardContext, Site

from . import _experts
from .config import HydraLoraAdapterConfig
from .mixlora import init_router, init_up


class HydraLoraAdapter(Adapter):
    """A shared A and N B heads per site, mixed per token by a learned router (HydraLoRA)."""

    name = "hydra_lora"
    config_class = HydraLoraAdapterConfig
    config: HydraLoraAdapterConfig

    def __init__(self, config: HydraLoraAdapterConfig, *, sites: Mapping[str, Site], context_size: int) -> None:
        super().__init__(config, sites=sites, context_size=context_size)
        n, r = config.num_experts, config.rank
        self.scale = config.alpha / r
        self.top_k = config.top_k if config.top_k is not None and config.top_k < n else None
        self.hydra_a = nn.ParameterDict()
        self.hydra_b = nn.ParameterDict()
        self.hydra_router = nn.ParameterDict()
        for name, site in sites.items():
            a = torch.empty(r, site.in_features)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # a LoRA's A
            key = self.site_key(name)
            self.hydra_a[key] = nn.Parameter(a)
            self.hydra_b[key] = nn.Parameter(init_up((n, site.out_features, r), config.init))
            self.hydra_router[key] = nn.Parameter(init_router(n, site.in_features))

    def weights(self, site: str) -> tuple[Tensor, Tensor, Tensor]:
        """(A (R, Din), B (N, Dout, R), router (N, Din)) at a site."""
        key = self.site_key(site)
        return self.hydra_a[key], self.hydra_b[key], self.hydra_router[key]

    def routed(self, site: str, x: Tensor, mask: Tensor | None, sample_weights: Tensor | None = None) -> Tensor:
        """The delta for x (B, T, Din), times `sample_weights` (B,) or (B, T) if given; `mask` (B, T) marks the tokens
        the balance loss counts."""
        a, b, router = self.weights(site)
        inputs, routing, weights = _experts.routed_tokens(self, x, mask, router, self.top_k, self.config.dropout, self.scale, sample_weights)
        h = F.linear(inputs, a.to(inputs.dtype))  # (M, R), shared by every head
        if routing.index is None:
            out = _experts.dense_products(h.repeat(1, len(b)), weights, b)
        else:
            out = _experts.expert_products(_experts.Dispatch(routing.index, len(b)), h, weights, None, b)
        return out.view(*x.shape[:-1], -1)

    def delta(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor:
        return self.routed(site, x, ctx.attention_mask)

    @classmethod
    def mix(
        cls, adapters: Sequence[Adapter], site: str, x: Tensor, y: Tensor, weights: Tensor, ctx: ForwardContext
    ) -> Tensor:
        """Each mixture on the samples that weight it (oracle routing: its task's samples) only."""
        return _experts.mix_by_rows(adapters, x, y, weights, ctx.attention_mask, lambda m, rows, mask, w: m.routed(site, rows, mask, w))  # type: ignore[attr-defined]
