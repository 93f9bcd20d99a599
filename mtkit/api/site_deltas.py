"""The deltas of the adapters at a site as delta-reading combiners see them (`SiteDeltas`).

A combiner that attends over the deltas (fusion) needs three things of them: a linear map of each (keys, values),
per-token dot products with a query, and a weighted sum. For a family with a factored form (`Adapter.low_rank`)
all three are done in its inner space, so the (B, T, K, Dout) deltas never exist: a map folds into the output
matrices once per forward, and per token only the inner activations, the K scores and one output product remain.
Families without one (hyper_lora) are materialised, and a site mixing both computes each part its own way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mtkit.api import lowrank
from mtkit.api.adapter import LowRank

__all__ = ["FactoredDeltas", "MaterialisedDeltas", "SiteDeltas"]


@dataclass(frozen=True)
class FactoredDeltas:
    """Deltas of one family kept in their inner space: delta_k = h_k U_k + c_k."""

    factors: LowRank
    h: Tensor  # (B, T, sum R) inner activations

    def project(self, weight: Tensor, bias: Tensor | None) -> FactoredDeltas:
        return FactoredDeltas(lowrank.project(self.factors, weight, bias), self.h)

    def dots(self, queries: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
        return lowrank.dots(self.factors, self.h, queries, weight, bias)

    def weighted_sum(self, weights: Tensor) -> Tensor:
        return lowrank.weighted_sum(self.factors, self.h, weights)

    def materialise(self) -> Tensor:
        return lowrank.stack_inner(self.factors, self.h)

    def rows(self, index: Tensor) -> FactoredDeltas:
        return FactoredDeltas(self.factors, self.h[index])


@dataclass(frozen=True)
class MaterialisedDeltas:
    """Deltas of one family without a factored form, computed."""

    deltas: Tensor  # (B, T, K_part, Dout)

    def project(self, weight: Tensor, bias: Tensor | None) -> MaterialisedDeltas:
        return MaterialisedDeltas(F.linear(self.deltas, weight.to(self.deltas.dtype), None if bias is None else bias.to(self.deltas.dtype)))

    def dots(self, queries: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
        if weight is not None:
            queries = F.linear(queries, weight.to(queries.dtype), None if bias is None else bias.to(queries.dtype))
        return torch.einsum("btp,btkp->btk", queries.to(self.deltas.dtype), self.deltas)

    def weighted_sum(self, weights: Tensor) -> Tensor:
        w = weights.to(self.deltas.dtype)
        return torch.einsum("bk,btkd->btd" if w.dim() == 2 else "btk,btkd->btd", w, self.deltas)

    def materialise(self) -> Tensor:
        return self.deltas

    def rows(self, index: Tensor) -> MaterialisedDeltas:
        return MaterialisedDeltas(self.deltas[index])


DeltaPart = FactoredDeltas | MaterialisedDeltas


class SiteDeltas:
    """Every adapter's delta at one site, k along the site's adapters (`SiteAdapters.columns` order, K_site of them).

    Built by `SiteAdapters.deltas(x, y, ctx)`. Each operation is exact: it equals the same operation on the
    materialised deltas `materialise()` (B, T, K_site, Dout).
    """

    def __init__(self, parts: Sequence[tuple[Sequence[int], DeltaPart]]) -> None:
        self._parts = [(list(positions), part) for positions, part in parts]
        order = [p for positions, _ in self._parts for p in positions]
        self.num_adapters = len(order)
        # Parts hold their adapters family by family; `_order` puts the concatenated results back in site order.
        self._order: list[int] | None = None
        if order != list(range(len(order))):
            self._order = sorted(range(len(order)), key=order.__getitem__)

    @property
    def factored(self) -> bool:
        """True when no adapter here is materialised (every family has a factored form)."""
        return all(isinstance(part, FactoredDeltas) for _, part in self._parts)

    def _site_order(self, pieces: list[Tensor]) -> Tensor:
        joined = torch.cat(pieces, dim=-1) if len(pieces) > 1 else pieces[0]
        return joined if self._order is None else joined[..., self._order]

    def project(self, weight: Tensor, bias: Tensor | None = None) -> SiteDeltas:
        """Every delta mapped by a linear layer: delta_k @ weight.T + bias, weight (P, Dout)."""
        return SiteDeltas([(positions, part.project(weight, bias)) for positions, part in self._parts])

    def dots(self, queries: Tensor, weight: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        """Per-token dot products q . delta_k, q = queries (B, T, Dq), or queries @ weight.T + bias.  -> (B, T, K_site)"""
        return self._site_order([part.dots(queries, weight, bias) for _, part in self._parts])

    def weighted_sum(self, weights: Tensor) -> Tensor:
        """sum_k weights[..., k] delta_k for weights (B, K_site) or (B, T, K_site).  -> (B, T, Dout)"""
        out: Tensor | None = None
        for positions, part in self._parts:
            piece = part.weighted_sum(weights if len(self._parts) == 1 and self._order is None else weights[..., positions])
            out = piece if out is None else out + piece
        assert out is not None, "a site has at least one adapter"
        return out

    def materialise(self) -> Tensor:
        """The deltas themselves.  -> (B, T, K_site, Dout)"""
        pieces = [part.materialise() for _, part in self._parts]
        joined = torch.cat(pieces, dim=2) if len(pieces) > 1 else pieces[0]
        return joined if self._order is None else joined[:, :, self._order]

    def rows(self, index: Tensor) -> SiteDeltas:
        """The deltas of the samples `index` selects (a boolean mask or indices over B)."""
        return SiteDeltas([(positions, part.rows(index)) for positions, part in self._parts])
