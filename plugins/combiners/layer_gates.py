"""`layer_gates`: learned gating over frozen adapters per token and per site (X-LoRA, Buehler & Buehler 2024; MoLE).

A classifier (X-LoRA's: Linear layers with ReLU) reads the frozen backbone's per-token last hidden state, from a
separate pass without adapters (X-LoRA's "scalings pass"; source `frozen_tokens`), and gives each token a weight per
adapter and site (`per_site`) or per adapter shared by every site, softmaxed over the adapters; optionally only the
top_k are kept (and softmaxed again). The second pass applies y + scale * sum_k w_k delta_k at each site. The same
arithmetic as PEFT's XLoraModel, so the same classifier weights give the same outputs (tested within 1e-5).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtkit import FROZEN_TOKENS, Combiner, CombinerSetup, ForwardContext, SiteAdapters, masked_mean

from .config import LayerGatesCombinerConfig


class LayerGatesCombiner(Combiner):
    """Per-token weights over the adapters at each site from a classifier over the frozen pass's hidden states."""

    name = "layer_gates"
    config_class = LayerGatesCombinerConfig
    config: LayerGatesCombinerConfig

    def __init__(self, config: LayerGatesCombinerConfig, *, setup: CombinerSetup) -> None:
        super().__init__(config, setup=setup)
        self.k = max(1, self.num_adapters)
        self.site_index = {name: i for i, name in enumerate(setup.sites)}
        self.temperature.fill_(config.temperature)
        outputs = self.k * (len(self.site_index) if config.per_site else 1)
        layers: list[nn.Module] = []
        width = setup.hidden_size
        for _ in range(config.num_layers - 1):
            layers += [nn.Linear(width, config.hidden_dim), nn.ReLU()] + ([nn.Dropout(config.dropout)] if config.dropout > 0 else [])
            width = config.hidden_dim
        self.classifier = nn.Sequential(*layers, nn.Linear(width, outputs))
        self._scalings: Tensor | None = None  # (B, T, S or 1, K) this forward's weights
        self._mask: Tensor | None = None

    def representation_sources(self) -> set[str]:
        return {FROZEN_TOKENS}

    def begin(self, ctx: ForwardContext) -> None:
        self._scalings, self._mask = None, ctx.attention_mask
        hidden = ctx.representation(FROZEN_TOKENS)
        if hidden is None:
            return  # adapters disabled: no site calls this forward
        logits = self.classifier(hidden.to(self.classifier[-1].weight.dtype))  # (B, T, S*K or K)
        scalings = logits.reshape(*logits.shape[:2], -1, self.k)
        if self.config.softmax:
            scalings = (scalings / self.temperature).softmax(-1)
        self._scalings = scalings

    def site_weights(self, site: str, x: Tensor) -> Tensor:
        """(B, T, K) weights at `site`: its classifier outputs, top_k kept (and softmaxed) where the config says."""
        assert self._scalings is not None
        scalings = self._scalings[:, :, self.site_index[site] if self.config.per_site else 0]  # (B, T, K)
        if scalings.shape[1] != x.shape[1]:
            # A cached generation step sees new tokens only: the routing decided from the prompt, its mean over tokens.
            scalings = masked_mean(scalings, self._mask)[:, None, :].expand(-1, x.shape[1], -1)
        top_k = self.config.top_k
        if top_k is not None:
            index = scalings.topk(min(top_k, self.k), dim=-1).indices
            scalings = scalings * torch.zeros_like(scalings).scatter(-1, index, 1.0)
            if self.config.softmax_top_k:
                kept = scalings != 0
                scalings = scalings.masked_fill(~kept, float("-inf")).softmax(-1).masked_fill(~kept, 0.0)
        return scalings * self.config.scale

    def combine(self, site: str, x: Tensor, y: Tensor, adapters: SiteAdapters, ctx: ForwardContext) -> Tensor:
        weights = self.site_weights(site, x).to(x.dtype)
        self.record(weights, ctx)
        # Top-k weights are zero by a mask (no gradient): only the adapters some token keeps are computed.
        return adapters.apply(x, y, weights, ctx, sparse=True if self.config.top_k is not None else None)
