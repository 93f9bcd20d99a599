"""`bottleneck`: Houlsby/Pfeiffer bottleneck adapters on sublayer outputs, batched across adapters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkit import Adapter, ForwardContext, Site

from ._low_rank import rank_space_weights
from .config import BottleneckAdapterConfig

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh}


class BottleneckAdapter(Adapter):
    """delta = up(act(down(y))) on a sublayer's output y; the site then outputs y + delta.

    Placement `pfeiffer` adapts each FFN output, `houlsby` each attention and FFN output
    (BERT-like `attention.output.dense` / `output.dense`, Llama-like `self_attn.o_proj` / `mlp.down_proj`).
    """

    name = "bottleneck"
    config_class = BottleneckAdapterConfig
    config: BottleneckAdapterConfig

    def __init__(self, config: BottleneckAdapterConfig, *, sites: Mapping[str, Site], context_size: int) -> None:
        super().__init__(config, sites=sites, context_size=context_size)
        self.act = ACTIVATIONS[config.non_linearity]
        self.bottleneck_down = nn.ModuleDict()
        self.bottleneck_up = nn.ModuleDict()
        for name, site in sites.items():
            size = config.bottleneck_dim or max(1, site.out_features // config.reduction_factor)
            down, up = nn.Linear(site.out_features, size), nn.Linear(size, site.out_features)
            nn.init.normal_(down.weight, std=0.02)  # small: near the identity even once `up` moves
            nn.init.zeros_(down.bias)
            nn.init.zeros_(up.bias)
            if config.init == "random":
                nn.init.normal_(up.weight, std=0.02)
            else:
                nn.init.zeros_(up.weight)  # exactly the identity at init
            self.bottleneck_down[self.site_key(name)] = down
            self.bottleneck_up[self.site_key(name)] = up

    def layers_at(self, site: str) -> tuple[nn.Linear, nn.Linear]:
        key = self.site_key(site)
        return self.bottleneck_down[key], self.bottleneck_up[key]  # type: ignore[return-value]

    def _dropout(self, h: Tensor) -> Tensor:
        p = self.config.dropout
        return F.dropout(h, p, True) if p > 0 and self.training else h

    def delta(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor:
        down, up = self.layers_at(site)
        return self._dropout(up(self.act(down(y))))

    @classmethod
    def mix(
        cls, adapters: Sequence[Adapter], site: str, x: Tensor, y: Tensor, weights: Tensor, ctx: ForwardContext
    ) -> Tensor:
        """K bottlenecks as one wide bottleneck: y -> (B, T, sum R) -> act -> scaled by w_k -> Dout.

        The non-linearity acts per hidden unit, so weighting adapter k's units by w_k weights its
        whole delta; the up-projection biases are weighted separately (weights @ biases).
        """
        bottlenecks: list[BottleneckAdapter] = list(adapters)  # type: ignore[arg-type]
        if len({(b.config.non_linearity, b.config.dropout) for b in bottlenecks}) > 1:
            return super().mix(adapters, site, x, y, weights, ctx)  # one wide bottleneck needs one activation
        pairs = [b.layers_at(site) for b in bottlenecks]
        weights = weights.to(y.dtype)
        w = rank_space_weights(weights, [1.0] * len(pairs), [down.out_features for down, _ in pairs])
        if len(pairs) == 1:
            down, up = pairs[0]
            h = bottlenecks[0].act(down(y)) * w
            bias = weights * up.bias  # (B, Dout) or (B, T, Dout)
            return bottlenecks[0]._dropout(F.linear(h, up.weight) + (bias.unsqueeze(1) if bias.dim() == 2 else bias))
        down_w = torch.cat([down.weight for down, _ in pairs])  # (sum R, Dout)
        down_b = torch.cat([down.bias for down, _ in pairs])
        up_w = torch.cat([up.weight for _, up in pairs], dim=1)  # (Dout, sum R)
        up_b = torch.stack([up.bias for _, up in pairs])  # (K, Dout)
        h = bottlenecks[0].act(F.linear(y, down_w, down_b)) * w
        bias = weights @ up_b
        return bottlenecks[0]._dropout(F.linear(h, up_w) + (bias.unsqueeze(1) if bias.dim() == 2 else bias))
