"""`lora`: low-rank adaptation of Linear sites, batched across adapters in rank space."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkit import Adapter, ForwardContext, Site

from .config import LoraAdapterConfig


class LoraAdapter(Adapter):
    """Low-rank adaptation: delta = B A x * alpha / rank, B zero-initialised."""

    name = "lora"
    config_class = LoraAdapterConfig
    config: LoraAdapterConfig

    def __init__(self, config: LoraAdapterConfig, *, sites: Mapping[str, Site], context_size: int) -> None:
        super().__init__(config, sites=sites, context_size=context_size)
        self.scale = config.alpha / config.rank
        self.lora_a = nn.ParameterDict()
        self.lora_b = nn.ParameterDict()
        for name, site in sites.items():
            a = torch.empty(config.rank, site.in_features)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # PEFT's default for A
            b = torch.zeros(site.out_features, config.rank)
            if config.init == "random":
                nn.init.normal_(b, std=0.02)
            self.lora_a[self.site_key(name)] = nn.Parameter(a)
            self.lora_b[self.site_key(name)] = nn.Parameter(b)

    def weights(self, site: str) -> tuple[Tensor, Tensor]:
        """(A (R, Din), B (Dout, R)) at a site."""
        key = self.site_key(site)
        return self.lora_a[key], self.lora_b[key]

    def delta(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor:
        a, b = self.weights(site)
        x = F.dropout(x, self.config.dropout, self.training)
        return F.linear(F.linear(x, a), b) * self.scale

    @classmethod
    def mix(
        cls, adapters: Sequence[Adapter], site: str, x: Tensor, y: Tensor, weights: Tensor, ctx: ForwardContext
    ) -> Tensor:
        """All K adapters as one LoRA of rank sum(R_k): x -> (B, T, sum R) -> scaled by w_k -> Dout.

        Weighting in rank space never materialises the K deltas, so K adapters cost about
        one LoRA of rank K*R: two matmuls whatever the weights (per sample or per token).
        """
        loras: list[LoraAdapter] = list(adapters)  # type: ignore[arg-type]
        a_cat = torch.cat([lora.weights(site)[0] for lora in loras])  # (sum R, Din)
        b_cat = torch.cat([lora.weights(site)[1] for lora in loras], dim=1)  # (Dout, sum R)
        ranks = torch.tensor([lora.config.rank for lora in loras], device=x.device)
        scales = torch.tensor([lora.scale for lora in loras], device=x.device, dtype=x.dtype)
        x = F.dropout(x, loras[0].config.dropout, loras[0].training)
        h = F.linear(x, a_cat)  # (B, T, sum R)
        w = (weights.to(x.dtype) * scales).repeat_interleave(ranks, dim=-1)  # (B, sum R) or (B, T, sum R)
        h = h * (w.unsqueeze(1) if w.dim() == 2 else w)
        return F.linear(h, b_cat)

    @classmethod
    def stack(cls, adapters: Sequence[Adapter], site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor:
        """Every adapter's delta in one pass.  -> (B, T, K, Dout)"""
        loras: list[LoraAdapter] = list(adapters)  # type: ignore[arg-type]
        if len({lora.config.rank for lora in loras}) > 1:
            return super().stack(adapters, site, x, y, ctx)
        k, r = len(loras), loras[0].config.rank
        a_cat = torch.cat([lora.weights(site)[0] for lora in loras])  # (K R, Din)
        b_stack = torch.stack([lora.weights(site)[1] * lora.scale for lora in loras])  # (K, Dout, R)
        x = F.dropout(x, loras[0].config.dropout, loras[0].training)
        h = F.linear(x, a_cat).unflatten(-1, (k, r))  # (B, T, K, R)
        return torch.einsum("btkr,kor->btko", h, b_stack)

    @torch.no_grad()
    def merge(self, site: str, linear: nn.Linear) -> None:
        a, b = self.weights(site)
        linear.weight += (b @ a * self.scale).to(linear.weight.dtype)

    @torch.no_grad()
    def unmerge(self, site: str, linear: nn.Linear) -> None:
        a, b = self.weights(site)
        linear.weight -= (b @ a * self.scale).to(linear.weight.dtype)
