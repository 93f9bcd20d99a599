"""`bottleneck`: Houlsby/Pfeiffer bottleneck adapters on sublayer outputs, composed in their inner space."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkit import Adapter, ForwardContext, LowRank, Site

from .config import BottleneckAdapterConfig

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh}


class BottleneckAdapter(Adapter):
    """delta = up(act(down(y))) on a sublayer's output y; the site then outputs y + delta.

    Placement `pfeiffer` adapts each FFN output, `houlsby` each attention and FFN output
    (BERT-like `attention.output.dense` / `output.dense`, Llama-like `self_attn.o_proj` / `mlp.down_proj`).
    """

    name = "bottleneck"
    task_independent = True  # its deltas read the site input (and input representations), never task ids
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
    def low_rank(cls, adapters: Sequence[Adapter], site: str) -> LowRank | None:
        """delta_k = act(y down_k^T + a_k) up_k^T + b_k, so K bottlenecks compose like one wide bottleneck.

        None (compute each delta on its own) when the adapters differ in activation, or train with output dropout:
        each adapter's dropout mask must fall on its own delta.
        """
        bottlenecks: list[BottleneckAdapter] = list(adapters)  # type: ignore[arg-type]
        if len({b.config.non_linearity for b in bottlenecks}) > 1:
            return None
        if bottlenecks[0].training and any(b.config.dropout > 0 for b in bottlenecks):
            return None
        pairs = [b.layers_at(site) for b in bottlenecks]
        return LowRank(
            reads="output",
            down=[down.weight for down, _ in pairs],
            down_bias=[down.bias for down, _ in pairs],
            up=[up.weight.T for _, up in pairs],
            up_bias=[up.bias for _, up in pairs],
            activation=bottlenecks[0].act,
        )
