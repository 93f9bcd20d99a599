"""The adapter interface, its optional capabilities, and the factored (low-rank) form families may expose."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from mtkit.api import lowrank
from mtkit.api.config import AdapterConfig
from mtkit.api.context import ForwardContext
from mtkit.api.lowrank import LowRank
from mtkit.api.sites import Site, site_key

if TYPE_CHECKING:
    from mtkit.api.interfaces import Backbone

__all__ = ["Adapter", "Exportable", "LoraFactors", "LowRank", "Mergeable"]


class Adapter(nn.Module, ABC):
    """One adapter across its sites: produces a delta for a site's output.

    Several adapters of the same class at a site are computed together by the classmethods `mix`
    (weighted sum of deltas) and `stack` (all deltas). A family that can write its adapters in factored
    form overrides `low_rank` and gets both batched for free; others may override `mix` and `stack`
    (their defaults loop over the adapters). An adapter that trains with an auxiliary loss (a router's load
    balance) declares its name on the config class (`aux_loss_names`) and adds it with `add_aux_loss` while
    training; phases weight it by name, as they weight a combiner's.
    """

    kind: ClassVar[str] = "adapter"
    name: ClassVar[str]
    config_class: ClassVar[type[AdapterConfig]]
    task_independent: ClassVar[bool] = False
    """True when this adapter's deltas depend on the site input (and input representations) alone, never on the
    samples' task ids (`ForwardContext.task_ids`, `own_adapters`): see `Combiner.task_independent`."""

    def __init__(self, config: AdapterConfig, *, sites: Mapping[str, Site], context_size: int) -> None:
        super().__init__()
        self.config = config
        self.site_names = sorted(sites)
        self.aux_losses: dict[str, Tensor] = {}

    @property
    def aux_loss_names(self) -> tuple[str, ...]:
        return tuple(getattr(self.config_class, "aux_loss_names", ()))

    site_key = staticmethod(site_key)

    @abstractmethod
    def delta(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor:
        """The delta at `site` for input x (B, T, Din) and frozen output y (B, T, Dout) -> (B, T, Dout)."""

    def begin(self, ctx: ForwardContext) -> None:
        """Called once per forward pass (once per `generate` call) before the first site: clear per-forward state."""

    def start_forward(self, ctx: ForwardContext) -> None:
        """Called by the model once per forward pass: drops the last pass's auxiliary losses, then `begin`."""
        self.aux_losses = {}
        self.begin(ctx)

    def add_aux_loss(self, name: str, value: Tensor) -> None:
        """Add to this forward pass's auxiliary loss `name` (one of the config class's `aux_loss_names`)."""
        assert name in self.aux_loss_names, f"aux loss {name!r} is not declared in {type(self.config).__name__}.aux_loss_names"
        self.aux_losses[name] = self.aux_losses[name] + value if name in self.aux_losses else value

    def representation_sources(self) -> set[str]:
        """Input representations this adapter reads from the context (see RepresentationSource)."""
        return set()

    @classmethod
    def low_rank(cls, adapters: Sequence[Adapter], site: str) -> LowRank | None:
        """The adapters at `site` in factored form, or None where the family (or its current settings) has none."""
        return None

    @classmethod
    def mix(
        cls, adapters: Sequence[Adapter], site: str, x: Tensor, y: Tensor, weights: Tensor, ctx: ForwardContext
    ) -> Tensor:
        """sum_k weights[..., k] * delta_k, for weights (B, K) or (B, T, K)."""

        factored = cls.low_rank(adapters, site)
        if factored is not None:
            return lowrank.mix(factored, x, y, weights, training=adapters[0].training)
        out = torch.zeros_like(y)
        for k, adapter in enumerate(adapters):
            w = weights[..., k]
            w = w[:, None, None] if w.dim() == 1 else w.unsqueeze(-1)
            out = out + w * adapter.delta(site, x, y, ctx)
        return out

    @classmethod
    def stack(cls, adapters: Sequence[Adapter], site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor:
        """Every adapter's delta.  -> (B, T, K, Dout)"""

        factored = cls.low_rank(adapters, site)
        if factored is not None:
            return lowrank.stack(factored, x, y, training=adapters[0].training)
        return torch.stack([a.delta(site, x, y, ctx) for a in adapters], dim=2)


@runtime_checkable
class Mergeable(Protocol):
    """An adapter whose delta is linear in x and can be folded into the base weight."""

    def merge(self, site: str, linear: nn.Linear) -> None: ...

    def unmerge(self, site: str, linear: nn.Linear) -> None: ...


@runtime_checkable
class Exportable(Protocol):
    """An adapter that can write itself in another library's on-disk format (`mtkit export`)."""

    export_formats: tuple[str, ...]

    def export(self, format: str, out_dir: Path, *, backbone: Backbone) -> None: ...


@runtime_checkable
class LoraFactors(Protocol):
    """An adapter whose delta at a site is scale * B A x (LoRA): weight-based routing (Arrow) and merging (TIES, DARE,
    SVD) read its factors as they are stored, the scale apart, as PEFT's own merging does."""

    def lora_factors(self, site: str) -> tuple[Tensor, Tensor, float]:
        """(A (R, Din), B (Dout, R), scale) at `site`."""
        ...
