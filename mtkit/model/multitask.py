"""The assembled multi-task model: backbone + adapters attached by forward hooks + combiner + heads.

Adapters attach through forward hooks on the backbone's Linear sites, so the backbone's own module
tree and parameter names stay untouched and its state dict still loads into a bare copy.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkit.api.adapter import Adapter, Mergeable
from mtkit.api.combiner import Combiner, MergedLora, RoutesByTask, SiteAdapters
from mtkit.api.context import FROZEN_TOKENS, ForwardContext, masked_mean
from mtkit.api.errors import MtkitError
from mtkit.api.interfaces import ROUTING_MASK, Backbone, BackboneOutput, Head, HeadOutput

__all__ = ["MultiTaskModel", "TaskBatch"]

COMBINER = "combiner"
"""What `merge_adapters` returns (and `mtkit export` names the folder) for a merged combiner."""

TaskBatch = tuple[str, dict[str, Any]]
"""A task name and a collated batch of that task's examples."""


class MultiTaskModel(nn.Module):
    """Runs mixed-task batches through one backbone pass, routing adapters per sample.

    The model holds its combiners by recipe path (the recipe's at `combiner`, the oracle at `oracle`) and runs the
    one the current phase names (`use_combiner`, `start_phase`): every site calls that combiner's `combine`, once.
    """

    def __init__(
        self,
        backbone: Backbone,
        adapters: Mapping[str, Adapter],
        combiners: Mapping[str, Combiner],
        heads: Mapping[str, Head],
        own_adapters: Mapping[str, str | None],
        *,
        active: str,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.adapters = nn.ModuleDict(dict(adapters))
        for path, combiner in combiners.items():
            self.add_module(path, combiner)  # state dict keys `<path>.*`
        self.combiners = dict(combiners)
        self.heads = nn.ModuleDict(dict(heads))
        self.task_names = list(heads)
        self.adapter_names = list(adapters)
        self.active = active
        self.adapters_enabled = True
        self.ctx = ForwardContext()
        # Each task's own adapter: a fact about a batch's samples that combiners may read (ForwardContext.own_adapters).
        own = [self.adapter_names.index(a) if a is not None else -1 for a in (own_adapters.get(t) for t in self.task_names)]
        self.register_buffer("own_adapter_index", torch.tensor(own, dtype=torch.long), persistent=False)
        self.merged_adapter: str | None = None
        self._folded: dict[str, Tensor] | None = None  # per site, the delta of a merged combiner folded into the weights
        self._needed: set[str] = set()
        self._last_active = active  # the combiner the last forward pass ran
        self._sites = self._site_adapters()
        self._handles: list[Any] = []
        self._check_checkpointing()
        self._attach()

    # --- wiring -----------------------------------------------------------------------------

    def start_phase(self, combiner: str, task_adapters: Mapping[str, str | None]) -> None:
        """Run combiner `combiner` (a path) from now on; a combiner that routes by task gets the phase's table."""
        self.active = combiner
        for held in self.combiners.values():
            if isinstance(held, RoutesByTask):
                held.route_tasks(task_adapters)

    def set_combiner(self, path: str, combiner: Combiner) -> None:
        """Replace the combiner held at `path` (a search over combiner settings reusing one built model)."""
        self.add_module(path, combiner)
        self.combiners[path] = combiner
        self._rewire()

    @property
    def running_combiner(self) -> Combiner:
        """The combiner the sites call now."""
        return self.combiners[self.active]

    @property
    def _last_combiner(self) -> Combiner:
        """The combiner the last forward pass started with."""
        return self.combiners[self._last_active]

    def _check_checkpointing(self) -> None:
        """A `layer:N` source is decided on mid-pass, inside layers that activation checkpointing recomputes."""
        mid_pass = sorted(s for s in self._sources(list(self.combiners.values())) if s.startswith("layer:"))
        if mid_pass and self.backbone.activation_checkpointing:
            raise MtkitError(
                f"activation checkpointing recomputes the layers where representation source {mid_pass[0]!r} is read; "
                "use source = \"embeddings\" or \"frozen_layer:N\", or turn the backbone's gradient_checkpointing off"
            )

    def _site_adapters(self) -> dict[str, SiteAdapters]:
        if self._folded is not None:
            return {}  # a merged combiner is in the base weights: no site needs a hook
        members: dict[str, list[tuple[int, Adapter]]] = {}
        for column, (aid, adapter) in enumerate(self.adapters.items()):
            if aid == self.merged_adapter:
                continue  # folded into the base weights: its sites need no hook for it
            for site in adapter.site_names:
                members.setdefault(site, []).append((column, adapter))
        return {site: SiteAdapters(site, found, len(self.adapter_names)) for site, found in members.items()}

    def site_adapters(self) -> dict[str, SiteAdapters]:
        """The adapters attached at each hooked site (none while a combiner is merged into the weights)."""
        return dict(self._sites)

    def _sources(self, combiners: Sequence[Combiner]) -> set[str]:
        sources = {s for c in combiners for s in c.representation_sources()}
        return sources | {s for a in self.adapters.values() for s in a.representation_sources()}

    def _attach(self) -> None:
        for site in self._sites:
            module = self.backbone.get_submodule(site)
            self._handles.append(module.register_forward_hook(partial(self._site_hook, site)))
        for source in self._sources(list(self.combiners.values())):
            if source.startswith("layer:"):  # the others are computed before the pass, in _begin
                module = self.backbone.layers()[layer_index(source)]
                self._handles.append(module.register_forward_hook(partial(self._representation_hook, source)))

    def _representation_hook(self, source: str, module: nn.Module, args: Any, output: Any) -> None:
        # Only the sources a running component reads, once per forward (once per generate call), never in the frozen pass.
        if source not in self._needed or source in self.ctx.representations or not self.adapters_enabled:
            return
        hidden = output[0] if isinstance(output, tuple) else output
        self.ctx.representations[source] = masked_mean(hidden, self.ctx.pool_mask)

    def _site_hook(self, site: str, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor:
        if not self.adapters_enabled:
            return output
        # The combiner this forward started with: activation checkpointing may recompute a layer after the running
        # combiner changed back, and must see the same computation.
        return self._last_combiner.combine(site, args[0], output, self._sites[site], self.ctx)

    # --- forward --------------------------------------------------------------------------

    def _begin(self, input_ids: Tensor, attention_mask: Tensor, task_ids: Tensor, pool_mask: Tensor | None = None) -> None:
        index = self.own_adapter_index.to(task_ids.device)
        pool_mask = attention_mask if pool_mask is None else pool_mask
        self.ctx = ForwardContext(
            task_ids=task_ids,
            own_adapters=index[task_ids],
            attention_mask=attention_mask,
            pool_mask=pool_mask,
            num_adapters=len(self.adapter_names),
        )
        self._last_active = self.active
        combiner = self.running_combiner
        self._needed = self._sources([combiner]) if self.adapters_enabled else set()
        # Sources known before the pass are computed now, so that combiners and adapters can make their per-forward
        # decisions in begin(), outside the layers that activation checkpointing recomputes.
        for source in sorted(self._needed):
            if source == "embeddings":
                self.ctx.representations[source] = self._embedded(input_ids, pool_mask)
            elif source.startswith("frozen_"):  # frozen_pass, frozen_layer:N, frozen_tokens
                self.ctx.representations[source] = self._frozen_representation(source, input_ids, attention_mask, pool_mask)
        combiner.start_forward(self.ctx)
        for adapter in self.adapters.values():
            adapter.start_forward(self.ctx)

    @torch.no_grad()
    def _embedded(self, input_ids: Tensor, pool_mask: Tensor) -> Tensor:
        """Mean-pooled input embeddings (the embeddings module in evaluation mode: no dropout, no random draw)."""
        module = self.backbone.embeddings()
        was_training = module.training
        module.eval()
        try:
            return masked_mean(module(input_ids), pool_mask)
        finally:
            module.train(was_training)

    @torch.no_grad()
    def _frozen_representation(self, source: str, input_ids: Tensor, attention_mask: Tensor, pool_mask: Tensor) -> Tensor:
        """Mean-pooled hidden state of the frozen backbone (no adapters): its last layer (`frozen_pass`), or layer N,
        stopping the pass there (`frozen_layer:N`); or its last layer unpooled, (B, T, D) (`frozen_tokens`)."""
        with self.adapters_disabled():
            if source == "frozen_pass":
                return masked_mean(self.backbone(input_ids, attention_mask).hidden, pool_mask)
            if source == FROZEN_TOKENS:
                return self.backbone(input_ids, attention_mask).hidden
            captured: list[Tensor] = []

            def stop(module: nn.Module, args: Any, output: Any) -> None:
                captured.append(output[0] if isinstance(output, tuple) else output)
                raise _StopPass

            handle = self.backbone.layers()[layer_index(source)].register_forward_hook(stop)
            try:
                self.backbone(input_ids, attention_mask)
            except _StopPass:
                pass
            finally:
                handle.remove()
        return masked_mean(captured[0], pool_mask)

    def run_backbone(
        self, input_ids: Tensor, attention_mask: Tensor, task_ids: Tensor, pool_mask: Tensor | None = None
    ) -> BackboneOutput:
        """One backbone pass; `pool_mask` (default: the attention mask) marks the tokens the pooled input
        representations read (a batch's `ROUTING_MASK`)."""
        self._begin(input_ids, attention_mask, task_ids, pool_mask)
        output = self.backbone(input_ids, attention_mask)
        self._last_combiner.finish_forward()
        return output

    def forward(self, batches: Sequence[TaskBatch]) -> tuple[dict[str, Tensor], dict[str, HeadOutput]]:
        """One backbone pass over the concatenated task batches; returns each task's loss and head outputs.

        Tasks whose head gives no loss (no labels) have no entry in the losses.
        """
        input_ids, attention_mask, task_ids, pool_mask = self._concat(batches)
        output = self.run_backbone(input_ids, attention_mask, task_ids, pool_mask)
        losses: dict[str, Tensor] = {}
        outputs: dict[str, HeadOutput] = {}
        start = 0
        for task, batch in batches:
            size = batch["input_ids"].shape[0]
            result = self.heads[task](_slice_output(output, start, size, batch["input_ids"].shape[1]), batch)
            outputs[task] = result
            if result.loss is not None:
                losses[task] = result.loss
            start += size
        return losses, outputs

    def generate(self, input_ids: Tensor, attention_mask: Tensor, task_ids: Tensor, **kwargs: Any) -> Tensor:
        """New tokens for left-padded prompts of any mix of tasks (`task_ids` (B,)), batched with the KV cache.

        Routing is decided once from the prompts and kept for every generated token; each row stops at its own
        stop strings or `max_new_tokens` (finished rows are padded).
        """
        self._begin(input_ids, attention_mask, task_ids)
        tokens = self.backbone.generate(input_ids, attention_mask, **kwargs)
        self._last_combiner.finish_forward()
        return tokens

    @property
    def aux_losses(self) -> dict[str, Tensor]:
        """The auxiliary losses the last forward pass added: its combiner's, and its adapters' (summed by name)."""
        losses = dict(self._last_combiner.aux_losses)
        for adapter in self.adapters.values():
            for name, value in adapter.aux_losses.items():
                losses[name] = losses[name] + value if name in losses else value
        return losses

    def _concat(self, batches: Sequence[TaskBatch]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Input ids, attention mask, task ids and pooling mask (each batch's `ROUTING_MASK`, else its attention mask)
        of the task batches, right-padded to one width."""
        width = max(b["input_ids"].shape[1] for _, b in batches)
        pad_id = self.pad_token_id
        ids, masks, tasks, pools = [], [], [], []
        for task, batch in batches:
            pad = width - batch["input_ids"].shape[1]
            ids.append(F.pad(batch["input_ids"], (0, pad), value=pad_id))
            masks.append(F.pad(batch["attention_mask"], (0, pad), value=0))
            pools.append(F.pad(batch.get(ROUTING_MASK, batch["attention_mask"]), (0, pad), value=0))
            tasks.append(torch.full((batch["input_ids"].shape[0],), self.task_names.index(task), dtype=torch.long))
        device = ids[0].device
        return torch.cat(ids), torch.cat(masks), torch.cat(tasks).to(device), torch.cat(pools)

    @property
    def pad_token_id(self) -> int:
        tokenizer = self.backbone.tokenizer
        return int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else 0

    @contextmanager
    def adapters_disabled(self) -> Iterator[None]:
        previous = self.adapters_enabled
        self.adapters_enabled = False
        try:
            yield
        finally:
            self.adapters_enabled = previous

    @contextmanager
    def use_combiner(self, path: str) -> Iterator[None]:
        """Run combiner `path` inside the block."""
        previous = self.active
        self.active = path
        try:
            yield
        finally:
            self.active = previous

    @property
    def task_independent(self) -> bool:
        """Whether a forward pass's outputs depend on the samples' inputs alone, not on their task ids: no adapter
        runs, or the running combiner and every adapter say so (`task_independent`)."""
        if not self.adapters_enabled or not self._sites:
            return True
        return self.running_combiner.task_independent and all(a.task_independent for a in self.adapters.values())

    def recording_routing(self) -> AbstractContextManager[list[Tensor]]:
        """Record the running combiner's per-sample adapter weights, one (B, K) tensor per forward pass."""
        return self.running_combiner.recording()

    # --- merging -----------------------------------------------------------------------------

    def merge_adapters(self) -> str:
        """Fold what the running combiner applies into the backbone's weights (inference).

        Allowed when the running combiner routes by task and every task uses one and the same Mergeable adapter, or
        when it applies one merged LoRA per site (`MergedLora`); the site hooks are removed while merged, so a forward
        costs what the bare backbone costs. The merged model applies that adapter (or merge) to every input whatever
        combiner runs. Returns the adapter's id (`combiner` for a merged combiner).
        """
        if self.merged_adapter is not None:
            raise MtkitError(f"adapter {self.merged_adapter!r} is already merged; call unmerge_adapters() first")
        running = self.running_combiner
        if isinstance(running, MergedLora):
            return self._fold_combiner(running)
        if not isinstance(running, RoutesByTask):
            raise MtkitError(
                f"merge_adapters: combiner {type(running).name!r} decides per input, so it cannot be merged into the base "
                "weights (a merging combiner can); run unmerged instead"
            )
        used = set(running.task_adapters().values())
        if len(used) != 1 or None in used:
            raise MtkitError(
                "merge_adapters: merging needs every task routed to one and the same adapter "
                f"(tasks use: {', '.join(sorted(str(u) for u in used))}); run unmerged instead"
            )
        aid = used.pop()
        assert aid is not None
        adapter = self.adapters[aid]
        if not isinstance(adapter, Mergeable):
            raise MtkitError(f"merge_adapters: adapter {aid!r} ({type(adapter).name}) cannot be merged into the base weights")
        for site in adapter.site_names:
            adapter.merge(site, self.backbone.get_submodule(site))
        self.merged_adapter = aid
        self._rewire()
        return aid

    def _fold_combiner(self, combiner: MergedLora) -> str:
        folded = {}
        with torch.no_grad():
            for site, adapters in self._sites.items():
                factors = combiner.merged_lora(site, adapters)
                if factors is not None:
                    weight: Tensor = self.backbone.get_submodule(site).weight  # type: ignore[assignment]
                    folded[site] = (factors[1] @ factors[0]).to(weight)
                    weight += folded[site]
        self._folded = folded
        self.merged_adapter = COMBINER
        self._rewire()
        return COMBINER

    def unmerge_adapters(self) -> None:
        """Undo merge_adapters: restore the base weights and the merged adapter's hooks."""
        if self.merged_adapter is None:
            return
        if self._folded is not None:
            with torch.no_grad():
                for site, delta in self._folded.items():
                    weight: Tensor = self.backbone.get_submodule(site).weight  # type: ignore[assignment]
                    weight -= delta
            self._folded, self.merged_adapter = None, None
            self._rewire()
            return
        adapter = self.adapters[self.merged_adapter]
        for site in adapter.site_names:
            adapter.unmerge(site, self.backbone.get_submodule(site))  # type: ignore[attr-defined]
        self.merged_adapter = None
        self._rewire()

    def _rewire(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._sites = self._site_adapters()
        self._attach()

    def for_task(self, task: str) -> TaskView:
        return TaskView(self, task)


def _slice_output(output: BackboneOutput, start: int, size: int, width: int) -> BackboneOutput:
    logits = output.logits[start : start + size, :width] if output.logits is not None else None
    return BackboneOutput(hidden=output.hidden[start : start + size, :width], logits=logits)


class TaskView:
    """The model seen from one task's head (what `Head.predict` receives)."""

    def __init__(self, model: MultiTaskModel, task: str) -> None:
        self.model, self.task = model, task

    def task_ids(self, batch: Mapping[str, Any]) -> Tensor:
        """The view's task id for every row of `batch`."""
        ids = batch["input_ids"]
        return torch.full((ids.shape[0],), self.model.task_names.index(self.task), dtype=torch.long, device=ids.device)

    def backbone_output(self, batch: Mapping[str, Any]) -> BackboneOutput:
        return self.model.run_backbone(batch["input_ids"], batch["attention_mask"], self.task_ids(batch), batch.get(ROUTING_MASK))

    def generate(self, batch: Mapping[str, Any], **kwargs: Any) -> Tensor:
        return self.model.generate(batch["input_ids"], batch["attention_mask"], self.task_ids(batch), **kwargs)


class _StopPass(Exception):
    """Ends a partial frozen pass once the layer a `frozen_layer:N` source reads has run."""


def layer_index(source: str) -> int:
    """N of a `layer:N` representation source."""
    return int(source.split(":", 1)[1])
