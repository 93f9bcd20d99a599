"""Per-forward state shared by the site hooks, the combiner and the adapters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["ForwardContext", "masked_mean"]


def masked_mean(hidden: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over tokens that the attention mask keeps.  (B, T, D), (B, T) -> (B, D)"""
    if mask is None:
        return hidden.mean(dim=1)
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


@dataclass
class ForwardContext:
    """What the model knows about the batch in flight.

    `begin()` is called once per forward (or once per `generate`), so anything stored in `cache`
    or `representations` is computed once and reused by every site.
    """

    routing: str = "oracle"
    """`oracle`: task ids pick the adapters; `learned`: the combiner decides."""
    temperature: float = 1.0
    adapters_enabled: bool = True
    routed_only: bool = False
    """Under oracle routing, compute only the adapters some sample of the batch is routed to, so a
    task's loss does not reach the others' parameters through zero weights (set while probing which
    parameters each task's loss reaches)."""
    task_ids: Tensor | None = None  # (B,)
    oracle_weights: Tensor | None = None  # (B, K) one row per sample, zeros where the task has no adapter
    attention_mask: Tensor | None = None  # (B, T)
    representations: dict[str, Tensor] = field(default_factory=dict)  # source -> (B, D)
    cache: dict[str, Any] = field(default_factory=dict)
    aux_losses: dict[str, Tensor] = field(default_factory=dict)
    routing_log: list[Tensor] = field(default_factory=list)

    def begin(self, *, task_ids: Tensor | None, oracle_weights: Tensor | None, attention_mask: Tensor | None) -> None:
        self.task_ids, self.oracle_weights, self.attention_mask = task_ids, oracle_weights, attention_mask
        self.representations = {}
        self.cache = {}
        self.aux_losses = {}

    def representation(self, source: str) -> Tensor | None:
        """The pooled input representation from `source`, or None if not computed yet in this pass."""
        return self.representations.get(source)

    def add_aux_loss(self, name: str, value: Tensor) -> None:
        self.aux_losses[name] = self.aux_losses[name] + value if name in self.aux_losses else value

    def record_routing(self, weights: Tensor) -> None:
        """Combiners call this once per forward with their per-sample adapter weights (B, K)."""
        self.routing_log.append(weights.detach().float().cpu())

    @property
    def batch_size(self) -> int:
        assert self.attention_mask is not None
        return int(self.attention_mask.shape[0])

    def device(self) -> torch.device:
        assert self.attention_mask is not None
        return self.attention_mask.device
