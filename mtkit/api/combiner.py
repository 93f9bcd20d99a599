"""The combiner interface and the one way adapters at a site are applied (`SiteAdapters`).

At every adapted site the model calls the running combiner's `combine`, once: the combiner the phase names (the
recipe's, or the oracle when the phase routes by task id; the model holds both by their recipe path). A combiner
either states weights over the adapters, (B, K) or (B, T, K), and leaves applying them to `SiteAdapters.apply`
(the output y plus the weighted deltas, computing only adapters some sample uses), or overrides `combine`
(attention over the deltas). Components keep their own per-forward state, cleared in `begin`.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from mtkit.api.adapter import Adapter, LowRank
from mtkit.api.config import ComponentConfig
from mtkit.api.context import ForwardContext, masked_mean
from mtkit.api.site_deltas import FactoredDeltas, MaterialisedDeltas, SiteDeltas
from mtkit.api.sites import Site

__all__ = [
    "GATHER_MIN_ADAPTERS",
    "GATHER_PER_SAMPLE_RATIO",
    "Combiner",
    "CombinerSetup",
    "MergedLora",
    "RoutesByTask",
    "SiteAdapters",
    "gathers",
]

GATHER_MIN_ADAPTERS = 4
"""Sparse per-sample weights (B, K) over fewer used adapters of a factored family are always mixed in the joint inner
space; from this many on, `gathers` decides."""
GATHER_PER_SAMPLE_RATIO = 2.0
"""Gather once the batch uses at least this many times as many adapters as a sample does (see `gathers`)."""


def gathers(used: int, per_sample: int) -> bool:
    """Whether sparse per-sample weights over `used` adapters of a factored family, at most `per_sample` of them in any
    sample, are applied by gathering each sample's adapters (`lowrank.gathered_mix`, cost ~ per_sample) rather than
    in the joint inner space (`lowrank.mix`, cost ~ used).

    Both are exact; the thresholds come from timing the two at a site (`python -m benchmarks.bench_library
    --section switch`).
    """
    return used >= GATHER_MIN_ADAPTERS and used >= GATHER_PER_SAMPLE_RATIO * per_sample


@dataclass(frozen=True)
class CombinerSetup:
    """What a combiner is built with besides its config (the same for every combiner)."""

    adapter_names: tuple[str, ...]
    """The adapters in column order: weights[..., k] weights adapter_names[k]."""
    task_names: tuple[str, ...]
    """The tasks in task-id order (ForwardContext.task_ids index this)."""
    sites: Mapping[str, Site]
    """The sites some adapter attaches to, in backbone order (per-site combiners create their parameters there)."""
    hidden_size: int
    """The backbone's width D (the size of pooled input representations)."""
    task_adapters: Mapping[str, str | None] = field(default_factory=dict)
    """Each task's own adapter (`tasks.X.adapter`, None for a task without one)."""


class SiteAdapters:
    """The adapters attached at one site, with their columns in the combiner's weights."""

    def __init__(self, site: str, members: Sequence[tuple[int, Adapter]], num_adapters: int) -> None:
        self.site = site
        self.columns = [c for c, _ in members]
        self.adapters = [a for _, a in members]
        self.num_adapters = num_adapters
        families: dict[type[Adapter], list[tuple[int, Adapter]]] = {}
        for column, adapter in members:
            families.setdefault(type(adapter), []).append((column, adapter))
        self.families = list(families.items())

    def present(self, device: torch.device | None = None) -> Tensor:
        """(K,) True at the columns of the adapters attached here."""
        mask = torch.zeros(self.num_adapters, dtype=torch.bool, device=device)
        mask[self.columns] = True
        return mask

    def apply(self, x: Tensor, y: Tensor, weights: Tensor, ctx: ForwardContext, *, sparse: bool | None = None) -> Tensor:
        """y + sum_k weights[..., k] * delta_k over the adapters here, for weights (B, K) or (B, T, K) over all columns.

        With `sparse`, adapters that no sample (or token) weights are not computed at all. That is exact whenever the
        weights carry no gradient, the default; a combiner whose zero weights come from a mask (top-k) may pass
        True with weights that do, since a masked weight gets no gradient either. Without autograd, what the weights
        decide (which adapters run, each sample's gathered factors) is prepared once and reused while the same weights
        tensor comes back in the same pass: the decoding steps of a generate call, whose routing is the prompt's.
        """
        if sparse is None:
            sparse = not weights.requires_grad
        reuse = not torch.is_grad_enabled()
        planned = ctx.site_plans.get(self.site) if reuse else None
        if planned is not None and planned[0] is weights and planned[1:3] == (weights._version, sparse):
            parts = planned[3]
        else:
            parts = self._plan(weights, ctx, sparse)
            if reuse:
                ctx.site_plans[self.site] = (weights, weights._version, sparse, parts)
        out = y
        for part in parts:
            out = out + part(x, y)
        return out

    def _plan(self, weights: Tensor, ctx: ForwardContext, sparse: bool) -> list[Callable[[Tensor, Tensor], Tensor]]:
        """For each family with an adapter to run, the function (x, y) -> its weighted deltas' sum."""
        used = weights.detach().ne(0).flatten(0, -2).any(0).tolist() if sparse else None
        parts = []
        for family, members in self.families:
            chosen = [(c, a) for c, a in members if used is None or used[c]]
            if chosen:
                parts.append(self._mix(family, chosen, weights, ctx, sparse))
        return parts

    def _mix(
        self, family: type[Adapter], chosen: list[tuple[int, Adapter]], weights: Tensor, ctx: ForwardContext, sparse: bool
    ) -> Callable[[Tensor, Tensor], Tensor]:
        from mtkit.api import lowrank

        columns = [c for c, _ in chosen]
        adapters = [a for _, a in chosen]
        w = weights[..., columns]
        training = adapters[0].training
        if sparse and len(columns) >= GATHER_MIN_ADAPTERS:
            per_row = int(w.detach().ne(0).sum(-1).max())  # adapters per sample (B, K) or per token (B, T, K)
            factored = family.low_rank(adapters, self.site) if gathers(len(columns), per_row) else None
            if factored is not None and w.dim() == 2:
                gathered = lowrank.gather(factored, w, per_row)
                return lambda x, y: lowrank.apply_gathered(gathered, x, y, training=training)
            if factored is not None:
                return lambda x, y: lowrank.dispatched_mix(factored, x, y, w, training=training)
        return lambda x, y: family.mix(adapters, self.site, x, y, w, ctx)

    def stack(self, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor:
        """Every attached adapter's delta, in `columns` order.  -> (B, T, K_site, Dout)"""
        parts: dict[int, Tensor] = {}
        for family, members in self.families:
            deltas = family.stack([a for _, a in members], self.site, x, y, ctx)
            parts |= {c: deltas[:, :, i] for i, (c, _) in enumerate(members)}
        if len(self.families) == 1:
            return deltas
        return torch.stack([parts[c] for c in self.columns], dim=2)

    def low_rank(self) -> list[tuple[list[int], LowRank | None]]:
        """Each family's adapters here in factored form (None where the family has none), with their positions on
        the site's adapter axis (indices into `columns`): what combiners that read the adapters' matrices use."""
        position = {c: i for i, c in enumerate(self.columns)}
        return [([position[c] for c, _ in members], family.low_rank([a for _, a in members], self.site)) for family, members in self.families]

    def deltas(self, x: Tensor, y: Tensor, ctx: ForwardContext, *, factored: bool = True) -> SiteDeltas:
        """Every attached adapter's delta, kept in its inner space where its family has a factored form (see
        `SiteDeltas`); `factored=False` materialises them all (the reference computation)."""
        from mtkit.api import lowrank

        parts: list[tuple[list[int], FactoredDeltas | MaterialisedDeltas]] = []
        for (positions, factors), (family, members) in zip(self.low_rank(), self.families, strict=True):
            adapters = [a for _, a in members]
            if factored and factors is not None:
                parts.append((positions, FactoredDeltas(factors, lowrank.inner(factors, x, y, training=adapters[0].training))))
            else:
                parts.append((positions, MaterialisedDeltas(family.stack(adapters, self.site, x, y, ctx))))
        return SiteDeltas(parts)

    def to_columns(self, values: Tensor) -> Tensor:
        """(..., K_site) values of the adapters here -> (..., K) over all columns, zeros elsewhere."""
        out = values.new_zeros(*values.shape[:-1], self.num_adapters)
        out[..., self.columns] = values
        return out


class Combiner(nn.Module, ABC):
    """Decides how the deltas of several adapters at a site become one.

    Implement `weights` (adapter weights per sample or per token; `SiteAdapters.apply` does the rest) or override
    `combine`. `temperature` is a buffer the phases' temperature schedules set, saved in checkpoints with the parameters.
    Auxiliary losses are declared by name on the config class (`aux_loss_names`) and added with `add_aux_loss`.
    """

    kind: ClassVar[str] = "combiner"
    name: ClassVar[str]
    config_class: ClassVar[type[ComponentConfig]]
    task_independent: ClassVar[bool] = False
    """True when the site outputs this combiner gives depend on each sample's input alone, never on its task id
    (`ForwardContext.task_ids`, `own_adapters`; an auxiliary loss may still read them). One backbone pass then
    serves the heads of every task asked of an input (`mtkit predict` with no --task); the default, False, runs one
    pass per task. The combiner contract tests check a True claim."""

    def __init__(self, config: ComponentConfig, *, setup: CombinerSetup) -> None:
        super().__init__()
        self.config = config
        self.adapter_names = list(setup.adapter_names)
        self.task_names = list(setup.task_names)
        self.num_adapters = len(self.adapter_names)
        self.register_buffer("temperature", torch.tensor(1.0))
        self.aux_losses: dict[str, Tensor] = {}
        self._routing_log: list[Tensor] | None = None
        self._routing_sum: Tensor | None = None
        self._routing_count = 0

    @property
    def aux_loss_names(self) -> tuple[str, ...]:
        return tuple(getattr(self.config_class, "aux_loss_names", ()))

    # --- what a combiner implements -------------------------------------------------------------

    def begin(self, ctx: ForwardContext) -> None:
        """Called once per forward pass (once per `generate` call) before the first site: clear per-forward state."""

    def weights(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor | None:
        """Adapter weights (B, K) or (B, T, K) at `site`, columns in `adapter_names` order; None applies none there."""
        raise NotImplementedError(f"combiner {self.name!r} implements neither weights() nor combine()")

    def combine(self, site: str, x: Tensor, y: Tensor, adapters: SiteAdapters, ctx: ForwardContext) -> Tensor:
        """The site output for input x (B, T, Din) and frozen output y (B, T, Dout): y + the weighted deltas."""
        w = self.weights(site, x, y, ctx)
        if w is None:
            return y
        self.record(w, ctx)
        return adapters.apply(x, y, w, ctx)

    def representation_sources(self) -> set[str]:
        """Input representations this combiner reads from the context (see RepresentationSource)."""
        return set()

    # --- services of the base class ---------------------------------------------------------------

    def set_temperature(self, temperature: float) -> None:
        """Set by the trainer every step of a phase with a temperature schedule."""
        self.temperature.fill_(temperature)

    def add_aux_loss(self, name: str, value: Tensor) -> None:
        """Add to this forward pass's auxiliary loss `name` (one of the config class's `aux_loss_names`)."""
        assert name in self.aux_loss_names, f"aux loss {name!r} is not declared in {type(self.config).__name__}.aux_loss_names"
        self.aux_losses[name] = self.aux_losses[name] + value if name in self.aux_losses else value

    def record(self, weights: Tensor, ctx: ForwardContext) -> None:
        """Note the adapter weights (B, K) or (B, T, K) applied at one site, while evaluation records routing.

        A forward pass's routing is the mean over the sites that recorded, per sample (per-token weights are
        averaged over the tokens the mask keeps), normalised to sum to 1.
        """
        if self._routing_log is None:
            return
        per_sample = (weights if weights.dim() == 2 else masked_mean(weights, ctx.attention_mask)).detach().float()
        self._routing_sum = per_sample if self._routing_sum is None else self._routing_sum + per_sample
        self._routing_count += 1

    # --- called by the model ----------------------------------------------------------------------

    def start_forward(self, ctx: ForwardContext) -> None:
        """Before a forward pass (or a `generate` call): clear this pass's aux losses and routing record, then `begin`."""
        self.aux_losses = {}
        self._routing_sum, self._routing_count = None, 0
        self.begin(ctx)

    def finish_forward(self) -> None:
        """After the pass: while recording, log its per-sample routing (see `record`)."""
        if self._routing_log is not None and self._routing_sum is not None:
            mean = self._routing_sum / self._routing_count
            self._routing_log.append((mean / mean.sum(-1, keepdim=True).clamp_min(1e-12)).cpu())
        self._routing_sum, self._routing_count = None, 0

    @contextmanager
    def recording(self) -> Iterator[list[Tensor]]:
        """Record the per-sample adapter weights of each forward pass inside the block, one (B, K) tensor per pass."""
        previous, self._routing_log = self._routing_log, []
        try:
            yield self._routing_log
        finally:
            self._routing_log = previous


@runtime_checkable
class MergedLora(Protocol):
    """A combiner that applies one LoRA per site, the same for every input (a merge of the adapters there).

    `MultiTaskModel.merge_adapters` folds it into the base weights while it runs, so inference costs what the
    bare backbone costs, and `mtkit export` writes it as a PEFT LoRA (the adapter id `combiner`).
    """

    def merged_lora(self, site: str, adapters: SiteAdapters) -> tuple[Tensor, Tensor] | None:
        """(A (R, Din), B (Dout, R)) with the site's delta = B A x, or None where nothing is applied at `site`."""
        ...


@runtime_checkable
class RoutesByTask(Protocol):
    """A combiner that sends each sample to the adapter its task is mapped to (the built-in `oracle`).

    It owns that task -> adapter table; a phase may map a task elsewhere (`phases.N.task_adapters`), which the model
    passes on when the phase starts. The model merges the one adapter such a combiner uses into the base weights.
    """

    def route_tasks(self, task_adapters: Mapping[str, str | None]) -> None:
        """Map each task to an adapter id (None: no adapter)."""
        ...

    def task_adapters(self) -> dict[str, str | None]:
        """The current task -> adapter table."""
        ...
