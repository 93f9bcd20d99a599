"""`lorahub`: one weight per library LoRA, found by gradient-free search on a few examples (Huang et al. 2024).

The composed LoRA at a site is A = sum_k w_k A_k, B = sum_k w_k s_k B_k (LoraHub sums the LoRAs' A and B, each
weighted; s_k is LoRA k's alpha / rank), so every LoRA at a site needs the same rank. The weights are searched with
CMA-ES (the `cma` package) in a phase with `fit_combiner = true`, minimising the few-shot loss plus an L1 penalty,
and kept in a buffer that checkpoints carry. Being the same LoRA for every input, it folds into the base weights for
inference (`mtkit.MergedLora`) and exports as a PEFT LoRA.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mtkit import Combiner, CombinerSetup, FitData, ForwardContext, MtkitError, SiteAdapters

from ._library import lora_factors
from .config import LoraHubCombinerConfig


class LoraHubCombiner(Combiner):
    """LoraHub: the LoRAs' A and B summed with one searched weight per LoRA, the same for every input."""

    name = "lorahub"
    config_class = LoraHubCombinerConfig
    config: LoraHubCombinerConfig

    def __init__(self, config: LoraHubCombinerConfig, *, setup: CombinerSetup) -> None:
        super().__init__(config, setup=setup)
        self.register_buffer("lorahub_weights", torch.full((max(1, self.num_adapters),), config.init))  # (K,)

    def merged_lora(self, site: str, adapters: SiteAdapters) -> tuple[Tensor, Tensor] | None:
        """(A (R, Din), B (Dout, R)) of the composed LoRA at `site`: delta = B A x."""
        members = zip(adapters.columns, adapters.adapters, strict=True)
        factors = [lora_factors(a, site, self.adapter_names[c], self.name, "use LoRA adapters") for c, a in members]
        ranks = {a.shape[0] for a, _, _ in factors}
        if len(ranks) > 1:
            listed = ", ".join(f"{self.adapter_names[c]!r}: {a.shape[0]}" for c, (a, _, _) in zip(adapters.columns, factors, strict=True))
            raise MtkitError(
                f"combiner 'lorahub' sums the LoRAs' A and B matrices, so their ranks at {site!r} must agree ({listed}); "
                "give the library's LoRAs one rank, or use combiner 'merge' with an svd method"
            )
        w = self.lorahub_weights[adapters.columns]  # (K_site,)
        a = torch.einsum("k,kri->ri", w.to(factors[0][0].dtype), torch.stack([a for a, _, _ in factors]))
        b = torch.einsum("k,kor->or", w.to(factors[0][1].dtype), torch.stack([b * s for _, b, s in factors]))
        return a, b

    def combine(self, site: str, x: Tensor, y: Tensor, adapters: SiteAdapters, ctx: ForwardContext) -> Tensor:
        merged = self.merged_lora(site, adapters)
        assert merged is not None
        # What routing records: every input gets the composition, each adapter in the share of its |weight| (uniform
        # while every weight is 0, before the search).
        shares = self.lorahub_weights.abs().to(x.dtype)
        shares = shares if bool(shares.sum() > 0) else torch.ones_like(shares)
        self.record(shares.expand(x.shape[0], -1), ctx)
        a, b = merged
        return y + F.linear(F.linear(x, a.to(x.dtype)), b.to(x.dtype))

    @torch.no_grad()
    def fit(self, data: FitData) -> dict[str, Any]:
        """CMA-ES over the weights in [-bound, bound]: few-shot loss + penalty * mean |w|; keeps the best weights seen."""
        import cma

        config = self.config
        pieces = [piece for task in data.tasks for piece in data.batches(task, config.examples)]
        if not pieces:
            raise MtkitError(f"combiner 'lorahub': phase {data.phase!r} draws from no task with training examples to score weights on")
        best: dict[str, Any] = {"objective": float("inf")}
        evaluations = 0

        def objective(weights: np.ndarray) -> float:
            nonlocal evaluations
            evaluations += 1
            self.lorahub_weights.copy_(torch.as_tensor(weights, dtype=self.lorahub_weights.dtype))
            loss = float(data.loss(pieces))
            value = loss + config.penalty * float(np.abs(weights).mean())
            if value < best["objective"]:
                best.update(objective=value, loss=loss, weights=np.array(weights, dtype=np.float64))
            return value

        start = np.full(self.num_adapters, config.init, dtype=np.float64)
        objective(start)
        options = {
            "bounds": [-config.bound, config.bound],
            "maxfevals": max(1, config.budget - 1),
            "seed": data.seed % (2**31 - 1) + 1,  # cma reads 0 as "draw a seed"
            "verbose": -9,
        }
        if config.population is not None:
            options["popsize"] = config.population
        state = np.random.get_state()  # cma seeds numpy's global generator; leave it as it was
        try:
            search = cma.CMAEvolutionStrategy(start, config.sigma, options)
            while not search.stop():
                candidates = search.ask()
                search.tell(candidates, [objective(c) for c in candidates])
        finally:
            np.random.set_state(state)
        self.lorahub_weights.copy_(torch.as_tensor(best["weights"], dtype=self.lorahub_weights.dtype))
        weights = {name: round(float(w), 6) for name, w in zip(self.adapter_names, best["weights"], strict=True)}
        data.log({"loss": best["loss"], "objective": best["objective"], "evaluations": evaluations})
        examples = sum(int(b["input_ids"].shape[0]) for _, b in pieces)
        return {"weights": weights, "loss": best["loss"], "objective": best["objective"], "evaluations": evaluations, "examples": examples}
