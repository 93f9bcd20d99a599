"""`hydra_lora`: one shared down-projection A and N up-projection heads B per site, mixed per token (HydraLoRA).

At a site with input x, each token t gets router probabilities p = softmax(W_r x_t) over the heads and the delta
sum_e w_e B_e (A x_t) * alpha / rank, with w = p (dense, the HydraLoRA design) or the top k of p renormalised.
A x is computed once for every head; top-k heads compute only the tokens routed to them. While training, the
router's Switch-style load-balance loss is added as the auxiliary loss `expert_balance` (mean over the sites).

The routing depends on x, so the delta cannot be merged into the base weights, and PEFT has no format for it:
`mtkit export` and `merge_adapters` refuse it by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from mtkit import Adapter, ForwardContext, Site

from . import _experts
from .config import HydraLoraAdapterConfig


class HydraLoraAdapter(Adapter):
    """A shared A and N B heads per site, mixed per token by a learned router (HydraLoRA)."""

    name = "hydra_lora"
    task_independent = True  # its deltas read the site input (and input representations), never task ids
    config_class = HydraLoraAdapterConfig
    config: HydraLoraAdapterConfig

    def __init__(self, config: HydraLoraAdapterConfig, *, sites: Mapping[str, Site], context_size: int) -> None:
        super().__init__(config, sites=sites, context_size=context_size)
        self.scale = config.alpha / config.rank
        self.top_k = config.top_k if config.top_k is not None and config.top_k < config.num_experts else None  # k = N: dense
        self.hydra_a, self.hydra_b, self.hydra_router = _experts.parameter_dicts(
            sites, config.num_experts, config.rank, config.init, shared_down=True
        )

    def matrices(self, site: str) -> tuple[Tensor, Tensor, Tensor]:
        """(A (R, Din), B (N, Dout, R), router (N, Din)) at a site."""
        key = self.site_key(site)
        return self.hydra_a[key], self.hydra_b[key], self.hydra_router[key]

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
