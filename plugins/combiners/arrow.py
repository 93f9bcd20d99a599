"""`arrow`: zero-shot routing of each token to the LoRAs whose weights align with it (Ostapenko et al. 2024).

Each LoRA's prototype at a site is the top right singular vector of its update B A: the input direction the
LoRA changes most. A token x scores |<v_k, x>| against every prototype (sign-free, as a singular vector's sign is
arbitrary), keeps the top_k and weights them by a softmax of the scores over the temperature. No training and no
task ids: the library's own weights route. GenKnowSub (Bagheri et al. 2025) first subtracts the average of some
general adapters from each task adapter's A and B, as PEFT's `ArrowConfig(use_gks=True)` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mtkit import Combiner, CombinerSetup, ForwardContext, LowRank, MtkitError, SiteAdapters, lowrank

from ._library import lora_factors
from ._routing import softmax_top_k
from .config import ArrowCombinerConfig


def top_right_singular_vector(a: Tensor, b: Tensor) -> Tensor:
    """The unit top right singular vector of B A, for A (R, Din) and B (Dout, R), without forming B A.  -> (Din,)

    With A^T = Q R (reduced QR), B A = (B R^T) Q^T, so the right singular vectors of B A are Q times those of the
    small (Dout, R) matrix B R^T. Exact (PEFT's Arrow approximates the same vector with 15 power iterations).
    """
    a64, b64 = a.detach().double(), b.detach().double()
    q, r = torch.linalg.qr(a64.T)  # (Din, R'), (R', R)
    _, _, vh = torch.linalg.svd(b64 @ r.T, full_matrices=False)  # vh (R', R')
    return (vh[0] @ q.T).to(a.dtype)


@dataclass
class _Site:
    """What Arrow keeps per site, rebuilt when a LoRA it reads changes."""

    key: tuple[int, ...]
    columns: list[int]  # the experts' columns in the combiner's weights
    prototypes: Tensor  # (K_experts, Din)
    subtracted: LowRank | None  # the experts after GenKnowSub (None without general adapters here)


class ArrowCombiner(Combiner):
    """Zero-shot per-token routing over LoRA experts by their top right singular vectors (Arrow), optional GenKnowSub.

    Prototypes depend on the LoRA weights only: they are computed once per site and again only after a LoRA's
    weights change (the cache is keyed by the parameters' version counters). Without general adapters the
    per-token weights are applied by `SiteAdapters.apply` (rank space, only the experts some token uses).
    """

    name = "arrow"
    config_class = ArrowCombinerConfig
    config: ArrowCombinerConfig

    def __init__(self, config: ArrowCombinerConfig, *, setup: CombinerSetup) -> None:
        super().__init__(config, setup=setup)
        unknown = [name for name in config.general_adapters if name not in self.adapter_names]
        if unknown:
            raise MtkitError(
                f"{unknown[0]!r} is not an adapter of the recipe (adapters: {', '.join(self.adapter_names) or 'none'})", key="general_adapters"
            )
        self.general = [self.adapter_names.index(name) for name in config.general_adapters]
        if self.adapter_names and len(self.general) == len(self.adapter_names):
            raise MtkitError("every adapter is a general one, so none is left to route to; list only the general adapters here", key="general_adapters")
        self.temperature.fill_(config.temperature)
        self._sites: dict[str, _Site] = {}

    def combine(self, site: str, x: Tensor, y: Tensor, adapters: SiteAdapters, ctx: ForwardContext) -> Tensor:
        state = self._site(site, adapters)
        if state is None:
            return y
        scores = (x @ state.prototypes.to(x.dtype).T).abs()  # (B, T, K_experts)
        coefficients = softmax_top_k(scores, min(self.config.top_k, len(state.columns)), self.temperature.to(x.dtype))
        weights = x.new_zeros(*x.shape[:-1], self.num_adapters)  # (B, T, K)
        weights[..., state.columns] = coefficients
        self.record(weights, ctx)
        if state.subtracted is None:
            return adapters.apply(x, y, weights, ctx, sparse=True)  # zero weights come from the top-k mask
        used = coefficients.detach().ne(0).flatten(0, -2).any(0).tolist()
        kept = [i for i, u in enumerate(used) if u]
        factors = LowRank(reads="input", down=[state.subtracted.down[i] for i in kept], up=[state.subtracted.up[i] for i in kept])
        return y + lowrank.mix(factors, x, y, coefficients[..., kept], training=False)

    # --- prototypes ---------------------------------------------------------------------------------

    def _site(self, site: str, adapters: SiteAdapters) -> _Site | None:
        factors = {column: _factors(adapter, site, self.adapter_names[column]) for column, adapter in zip(adapters.columns, adapters.adapters, strict=True)}
        experts = [c for c in adapters.columns if c not in self.general]
        if not experts:
            return None
        # In-place updates (optimiser steps, load_state_dict) bump a tensor's version; moving it changes its storage.
        key = tuple(v for a, b, _ in factors.values() for t in (a, b) for v in (t._version, t.data_ptr()))
        cached = self._sites.get(site)
        if cached is None or cached.key != key:
            cached = self._sites[site] = self._build(site, key, experts, factors)
        return cached

    @torch.no_grad()
    def _build(self, site: str, key: tuple[int, ...], experts: list[int], factors: dict[int, tuple[Tensor, Tensor, float]]) -> _Site:
        general = [factors[c] for c in self.general if c in factors]
        pairs = [(factors[c][0], factors[c][1]) for c in experts]
        subtracted = None
        if general:
            pairs = _gen_know_sub(pairs, [(a, b) for a, b, _ in general], site, [self.adapter_names[c] for c in experts])
            subtracted = LowRank(
                reads="input", down=[a for a, _ in pairs], up=[(b * factors[c][2]).T for c, (_, b) in zip(experts, pairs, strict=True)]
            )
        prototypes = torch.stack([top_right_singular_vector(a, b) for a, b in pairs])
        return _Site(key, experts, prototypes, subtracted)


def _factors(adapter: object, site: str, name: str) -> tuple[Tensor, Tensor, float]:
    return lora_factors(adapter, site, name, "arrow", "use LoRA adapters, or another combiner")


def _gen_know_sub(
    pairs: Sequence[tuple[Tensor, Tensor]], general: Sequence[tuple[Tensor, Tensor]], site: str, names: Sequence[str]
) -> list[tuple[Tensor, Tensor]]:
    """Each expert's (A - mean of the general A's, B - mean of the general B's), as PEFT's GenKnowSub subtracts them."""
    shape = (general[0][0].shape, general[0][1].shape)
    labelled = [*(("the general adapters", g) for g in general), *((f"adapter {n!r}", p) for n, p in zip(names, pairs, strict=True))]
    for label, (a, b) in labelled:
        if (a.shape, b.shape) != shape:
            raise MtkitError(
                f"combiner 'arrow': GenKnowSub subtracts the general adapters' A and B from each expert's, so every shape must "
                f"agree, but at {site!r} {label} hold A {tuple(a.shape)} where the first general adapter holds {tuple(shape[0])}; "
                "give every adapter the same rank"
            )
    mean_a = torch.stack([a for a, _ in general]).mean(0)
    mean_b = torch.stack([b for _, b in general]).mean(0)
    return [(a - mean_a, b - mean_b) for a, b in pairs]
