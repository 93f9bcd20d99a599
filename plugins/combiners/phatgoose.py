"""`phatgoose`: post-hoc gates over a frozen library (PHATGOOSE, Muqeeth et al. 2024).

Each adapter gets a gate vector per site, trained after the fact on that adapter's own tasks' data with everything
else frozen: while adapter k's gates train, its delta at a site is scaled per token by sigmoid(<g_k, x>). This is the
combiner's routine, run by a phase with `fit_combiner = true`. At inference every token goes, at every site, to the
top_k adapters whose normalised gate has the largest cosine with the normalised token (softmax of those cosines over
the temperature). The weights are sparse per token, so only adapters some token uses are computed.
"""

from __future__ import annotations

from itertools import cycle, islice
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkit import Combiner, CombinerSetup, FitData, ForwardContext, MtkitError, SiteAdapters, site_key

from ._routing import softmax_top_k
from .config import PhatgooseCombinerConfig


class PhatgooseCombiner(Combiner):
    """Per token and site, the top_k adapters by cosine of the token and each adapter's post-hoc trained gate."""

    name = "phatgoose"
    config_class = PhatgooseCombinerConfig
    config: PhatgooseCombinerConfig

    def __init__(self, config: PhatgooseCombinerConfig, *, setup: CombinerSetup) -> None:
        super().__init__(config, setup=setup)
        k = max(1, self.num_adapters)
        self.temperature.fill_(config.temperature)
        # Small random gates until `fit` trains them (each from zero, as PHATGOOSE does), so an unfitted model routes
        # at random rather than tying every adapter.
        gates = {site_key(name): nn.Parameter(torch.randn(k, site.in_features) * 0.02) for name, site in setup.sites.items()}
        self.gates = nn.ParameterDict(gates)  # site -> (K, Din)
        self._training_column: int | None = None  # while `fit` trains this adapter's gates

    def gate_weights(self, site: str, x: Tensor, adapters: SiteAdapters) -> Tensor:
        """(B, T, K) weights at `site`: softmax over the top_k cosines of each token with the attached adapters' gates."""
        gates = self.gates[site_key(site)]
        cosines = F.normalize(x, dim=-1) @ F.normalize(gates, dim=-1).to(x.dtype).T  # (B, T, K)
        cosines = cosines.masked_fill(~adapters.present(x.device), float("-inf"))
        return softmax_top_k(cosines, min(self.config.top_k, len(adapters.columns)), self.temperature.to(x.dtype))

    def combine(self, site: str, x: Tensor, y: Tensor, adapters: SiteAdapters, ctx: ForwardContext) -> Tensor:
        column = self._training_column
        if column is not None:  # gate training: adapter `column` alone, scaled per token by sigmoid(<g, x>)
            if column not in adapters.columns:
                return y
            weights = x.new_zeros(*x.shape[:-1], self.num_adapters)
            weights[..., column] = torch.sigmoid(x @ self.gates[site_key(site)][column].to(x.dtype))
            return adapters.apply(x, y, weights, ctx, sparse=True)  # the other columns are constant zeros
        weights = self.gate_weights(site, x, adapters)
        self.record(weights, ctx)
        return adapters.apply(x, y, weights, ctx, sparse=True)  # zero weights come from the top-k mask

    def fit(self, data: FitData) -> dict[str, Any]:
        """Train each adapter's gates, from zero, for `gate_steps` steps on its own tasks' training batches."""
        config, losses = self.config, {}
        gates = list(self.gates.values())
        try:
            for column, name in enumerate(self.adapter_names):
                batches = [b for task in data.adapter_tasks.get(name, ()) for b in data.batches(task, config.examples)]
                if not batches:
                    continue
                with torch.no_grad():
                    for gate in gates:
                        gate[column] = 0.0
                self._training_column = column
                for gate in gates:
                    gate.requires_grad_(True)
                optimizer = torch.optim.AdamW(gates, lr=config.gate_lr, weight_decay=0.0)  # other rows get no gradient
                trace = []
                for batch in islice(cycle(batches), config.gate_steps):
                    loss = data.loss([batch])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    trace.append(float(loss.detach()))
                losses[name] = {"first": round(trace[0], 5), "last": round(sum(trace[-5:]) / len(trace[-5:]), 5)}
                data.log({"adapter": name, "first_loss": trace[0], "last_loss": trace[-1]})
        finally:
            self._training_column = None
            for gate in gates:
                gate.requires_grad_(False)
                gate.grad = None
        if not losses:
            raise MtkitError(
                f"combiner 'phatgoose': no adapter serves a task with training examples, so no gate can train; route tasks to "
                f"the library's adapters (tasks.TASK.adapter) before phase {data.phase!r}"
            )
        return {"gate_loss": {n: f"{v['first']} -> {v['last']}" for n, v in losses.items()}, "gate_steps": config.gate_steps}
