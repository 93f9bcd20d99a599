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

from collections.abc import Mapping, Sequence

from torch import Tensor

from mtkit import Adapter, ForwardContext, Site

from . import _experts
from .config import MixLoraAdapterConfig


class MixLoraAdapter(Adapter):
    """N LoRA experts per site, the top k of them chosen per token by a learned router (MixLoRA)."""

    name = "mixlora"
    task_independent = True  # its deltas read the site input (and input representations), never task ids
    config_class = MixLoraAdapterConfig
    config: MixLoraAdapterConfig

    def __init__(self, config: MixLoraAdapterConfig, *, sites: Mapping[str, Site], context_size: int) -> None:
        super().__init__(config, sites=sites, context_size=context_size)
        self.scale = config.alpha / config.rank
        self.top_k = config.top_k if config.top_k is not None and config.top_k < config.num_experts else None  # k = N: dense
        self.mixlora_a, self.mixlora_b, self.mixlora_router = _experts.parameter_dicts(
            sites, config.num_experts, config.rank, config.init, shared_down=False
        )

    def matrices(self, site: str) -> tuple[Tensor, Tensor, Tensor]:
        """(A (N, R, Din), B (N, Dout, R), router (N, Din)) at a site."""
        key = self.site_key(site)
        return self.mixlora_a[key], self.mixlora_b[key], self.mixlora_router[key]

    def routed(self, site: str, x: Tensor, mask: Tensor | None, sample_weights: Tensor | None = None) -> Tensor:
        """The delta for x (B, T, Din), times `sample_weights` (B,) or (B, T) if given; `mask` (B, T) marks the tokens
        the balance loss counts."""
        return _experts.mixture_delta(self, self.matrices(site), x, mask, self.top_k, self.scale, self.config.dropout, sample_weights)

    def delta(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor:
        return self.routed(site, x, ctx.attention_mask)

    @classmethod
    def mix(
        cls, adapters: Sequence[Adapter], site: str, x: Tensor, y: Tensor, weights: Tensor, ctx: ForwardContext
    ) -> Tensor:
        """Each mixture on the samples that weight it (oracle routing: its task's samples) only."""
        return _experts.mix_by_rows(adapters, x, y, weights, ctx.attention_mask, lambda m, rows, mask, w: m.routed(site, rows, mask, w))  # type: ignore[attr-defined]
