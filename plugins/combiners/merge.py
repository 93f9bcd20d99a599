"""`merge`: the LoRAs merged into one LoRA per site, applied to every input (task arithmetic, TIES, DARE, SVD).

The merge is PEFT's `add_weighted_adapter` with PEFT's own merge functions. Being the same for every input, the
merged LoRA folds into the base weights (`MultiTaskModel.merge_adapters`), so inference costs exactly the bare
backbone, and `mtkit export` writes it as a PEFT LoRA (`combiner/`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mtkit import Combiner, CombinerSetup, ForwardContext, MtkitError, SiteAdapters, component_seed, seeded

from ._library import lora_factors
from ._merging import Factors, merge_loras
from .config import MergeCombinerConfig


class MergeCombiner(Combiner):
    """The recipe's LoRAs merged into one LoRA per site (PEFT's add_weighted_adapter), the same for every input.

    The merge depends on the LoRA weights only: it is computed once per site and again only after a LoRA's weights
    change (the cache is keyed by the parameters' version counters). It carries no gradient to the adapters.
    """

    name = "merge"
    config_class = MergeCombinerConfig
    config: MergeCombinerConfig

    def __init__(self, config: MergeCombinerConfig, *, setup: CombinerSetup) -> None:
        super().__init__(config, setup=setup)
        chosen = list(config.adapters or self.adapter_names)
        unknown = [n for n in chosen if n not in self.adapter_names]
        if unknown:
            raise MtkitError(f"{unknown[0]!r} is not an adapter of the recipe (adapters: {', '.join(self.adapter_names) or 'none'})", key="adapters")
        stray = [n for n in config.weights if n not in chosen]
        if stray:
            raise MtkitError(f"{stray[0]!r} is not one of the merged adapters ({', '.join(chosen)})", key="weights")
        self.columns = [self.adapter_names.index(n) for n in chosen]
        self.merge_weights = [config.weights.get(n, config.weight) for n in chosen]
        self._cache: dict[str, tuple[tuple[int, ...], tuple[Tensor, Tensor] | None]] = {}

    def merged_lora(self, site: str, adapters: SiteAdapters) -> tuple[Tensor, Tensor] | None:
        """(A (R, Din), B (Dout, R)): the merge of the chosen LoRAs attached at `site` (delta = B A x), or None."""
        attached = dict(zip(adapters.columns, adapters.adapters, strict=True))
        members = [(i, c) for i, c in enumerate(self.columns) if c in attached]
        factors = [_factors(attached[c], site, self.adapter_names[c]) for _, c in members]
        # In-place updates (optimiser steps, load_state_dict) bump a tensor's version; moving it changes its storage.
        key = tuple(v for a, b, _ in factors for t in (a, b) for v in (t._version, t.data_ptr()))
        cached = self._cache.get(site)
        if cached is None or cached[0] != key:
            cached = self._cache[site] = (key, self._merge(site, [i for i, _ in members], factors))
        return cached[1]

    @torch.no_grad()
    def _merge(self, site: str, members: list[int], factors: list[Factors]) -> tuple[Tensor, Tensor] | None:
        if not factors:
            return None
        config = self.config
        # DARE draws at random: each site from its own generator, so the merge does not depend on the order sites run.
        with seeded(component_seed(config.seed, site)):
            a, b = merge_loras(
                factors,
                [self.merge_weights[i] for i in members],
                config.method,
                density=config.density,
                majority_sign_method=config.majority_sign_method,
                svd_rank=config.svd_rank,
                svd_clamp=config.svd_clamp,
                names=[self.adapter_names[self.columns[i]] for i in members],
            )
        device = factors[0][0].device
        return a.to(device), b.to(device)

    def combine(self, site: str, x: Tensor, y: Tensor, adapters: SiteAdapters, ctx: ForwardContext) -> Tensor:
        merged = self.merged_lora(site, adapters)
        if merged is None:
            return y
        # What routing records: every input gets the merge, each adapter in the share of its weight.
        shares = x.new_zeros(self.num_adapters)
        shares[self.columns] = torch.tensor([abs(w) for w in self.merge_weights], dtype=x.dtype, device=x.device)
        self.record(shares.expand(x.shape[0], -1), ctx)
        a, b = merged
        return y + F.linear(F.linear(x, a.to(x.dtype)), b.to(x.dtype))


def _factors(adapter: object, site: str, name: str) -> tuple[Tensor, Tensor, float]:
    return lora_factors(adapter, site, name, "merge", "list only LoRA adapters in combiner.adapters")
