"""The assembled multi-task model: backbone + adapters attached by forward hooks + combiner + heads.

Adapters attach through forward hooks on the backbone's Linear sites, so the backbone's own module
tree and parameter names stay untouched and its state dict still loads into a bare copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkit.context import ForwardContext, masked_mean
from mtkit.interfaces import Adapter, AdapterGroup, Backbone, BackboneOutput, Combiner, Head, HeadOutput

__all__ = ["MultiTaskModel", "TaskBatch"]

TaskBatch = tuple[str, dict[str, Any]]
"""A task name and a collated batch of that task's examples."""


class MultiTaskModel(nn.Module):
    """Runs mixed-task batches through one backbone pass, routing adapters per sample."""

    def __init__(
        self,
        backbone: Backbone,
        adapters: Mapping[str, Adapter],
        combiner: Combiner,
        heads: Mapping[str, Head],
        task_adapter: Mapping[str, str | None],
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.adapters = nn.ModuleDict(dict(adapters))
        self.combiner = combiner
        self.heads = nn.ModuleDict(dict(heads))
        self.task_names = list(heads)
        self.adapter_names = list(adapters)
        index = [self.adapter_names.index(a) if a is not None else -1 for a in (task_adapter[t] for t in self.task_names)]
        self.register_buffer("task_adapter_index", torch.tensor(index, dtype=torch.long), persistent=False)
        self.ctx = ForwardContext()
        self.merged_adapter: str | None = None
        self._groups = self._site_groups()
        self._handles: list[Any] = []
        self._attach()

    # --- wiring -----------------------------------------------------------------------------

    def _site_groups(self) -> dict[str, list[AdapterGroup]]:
        groups: dict[str, list[AdapterGroup]] = {}
        for column, (aid, adapter) in enumerate(self.adapters.items()):
            if aid == self.merged_adapter:
                continue  # folded into the base weights: its sites need no hook for it
            for site in adapter.site_names:
                site_groups = groups.setdefault(site, [])
                group = next((g for g in site_groups if g.cls is type(adapter)), None)
                if group is None:
                    site_groups.append(AdapterGroup(type(adapter), [adapter], [column]))
                else:
                    group.adapters.append(adapter)
                    group.columns.append(column)
        return groups

    def _attach(self) -> None:
        for site in self._groups:
            module = self.backbone.get_submodule(site)
            self._handles.append(module.register_forward_hook(partial(self._site_hook, site)))
        sources = set(self.combiner.representation_sources())
        for adapter in self.adapters.values():
            sources |= adapter.representation_sources()
        self._frozen_pass = "frozen_pass" in sources
        for source in sources - {"frozen_pass"}:
            module = self.backbone.embeddings() if source == "embeddings" else self._layer(source)
            self._handles.append(module.register_forward_hook(partial(self._representation_hook, source)))

    def _layer(self, source: str) -> nn.Module:
        layers = self.backbone.layers()
        index = int(source.split(":", 1)[1])
        if not 0 <= index < len(layers):
            raise ValueError(f"representation source {source!r}: the backbone has layers 0-{len(layers) - 1}")
        return layers[index]

    def _representation_hook(self, source: str, module: nn.Module, args: Any, output: Any) -> None:
        if source in self.ctx.representations:
            return  # computed once per forward (and once per generate call)
        hidden = output[0] if isinstance(output, tuple) else output
        self.ctx.representations[source] = masked_mean(hidden, self.ctx.attention_mask)

    def _site_hook(self, site: str, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor:
        ctx = self.ctx
        if not ctx.adapters_enabled:
            return output
        x = args[0]
        groups = self._groups[site]
        if ctx.routing == "oracle":
            weights = ctx.oracle_weights
            assert weights is not None, "oracle routing needs task ids"
            out = output
            for group in groups:
                routed = group.routed(weights) if ctx.routed_only else group
                if routed is not None:
                    out = out + routed.mix(site, x, output, weights, ctx)
            return out
        return self.combiner.combine(site, x, output, groups, ctx)

    # --- forward --------------------------------------------------------------------------

    def oracle_weights(self, task_ids: Tensor) -> Tensor:
        """(B,) task ids -> (B, K) one-hot rows over adapters (zero rows for tasks without one)."""
        k = max(len(self.adapter_names), 1)
        index = self.task_adapter_index.to(task_ids.device)[task_ids]
        return F.one_hot(index.clamp_min(0), k).to(torch.float32) * (index >= 0).unsqueeze(-1)

    def _begin(self, input_ids: Tensor, attention_mask: Tensor, task_ids: Tensor) -> None:
        self.ctx.begin(task_ids=task_ids, oracle_weights=self.oracle_weights(task_ids), attention_mask=attention_mask)
        if self._frozen_pass:
            with torch.no_grad(), self.adapters_disabled():
                hidden = self.backbone(input_ids, attention_mask).hidden
            self.ctx.representations["frozen_pass"] = masked_mean(hidden, attention_mask)

    def run_backbone(self, input_ids: Tensor, attention_mask: Tensor, task_ids: Tensor) -> BackboneOutput:
        self._begin(input_ids, attention_mask, task_ids)
        return self.backbone(input_ids, attention_mask)

    def forward(self, batches: Sequence[TaskBatch]) -> tuple[Tensor, dict[str, HeadOutput]]:
        """One backbone pass over the concatenated task batches; returns the weighted loss and outputs.

        The loss is the mean of the tasks' losses weighted by each task's share of the batch.
        """
        input_ids, attention_mask, task_ids, sizes = self._concat(batches)
        output = self.run_backbone(input_ids, attention_mask, task_ids)
        outputs: dict[str, HeadOutput] = {}
        total = input_ids.new_zeros((), dtype=torch.float32)
        start = 0
        for (task, batch), size in zip(batches, sizes, strict=True):
            sliced = _slice_output(output, start, size, batch["input_ids"].shape[1])
            result = self.heads[task](sliced, batch)
            outputs[task] = result
            if result.loss is not None:
                total = total + result.loss * (size / input_ids.shape[0])
            start += size
        return total, outputs

    def _concat(self, batches: Sequence[TaskBatch]) -> tuple[Tensor, Tensor, Tensor, list[int]]:
        width = max(b["input_ids"].shape[1] for _, b in batches)
        pad_id = self.pad_token_id
        ids, masks, tasks, sizes = [], [], [], []
        for task, batch in batches:
            pad = width - batch["input_ids"].shape[1]
            ids.append(F.pad(batch["input_ids"], (0, pad), value=pad_id))
            masks.append(F.pad(batch["attention_mask"], (0, pad), value=0))
            size = batch["input_ids"].shape[0]
            tasks.append(torch.full((size,), self.task_names.index(task), dtype=torch.long))
            sizes.append(size)
        device = ids[0].device
        return torch.cat(ids), torch.cat(masks), torch.cat(tasks).to(device), sizes

    @property
    def pad_token_id(self) -> int:
        tokenizer = self.backbone.tokenizer
        return int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else 0

    @contextmanager
    def adapters_disabled(self) -> Any:
        previous = self.ctx.adapters_enabled
        self.ctx.adapters_enabled = False
        try:
            yield
        finally:
            self.ctx.adapters_enabled = previous

    @contextmanager
    def routing(self, mode: str) -> Any:
        previous = self.ctx.routing
        self.ctx.routing = mode
        try:
            yield
        finally:
            self.ctx.routing = previous

    # --- merging -----------------------------------------------------------------------------

    def merge_adapters(self) -> str:
        """Fold the one adapter that oracle routing applies into the backbone's weights (inference).

        Allowed when every task routes to the same Mergeable adapter; its site hooks are removed
        while merged, so a forward costs what the bare backbone costs. The merged model applies
        that adapter to every input whatever the routing mode. Returns the adapter's id.
        """
        from mtkit.errors import MtkitError
        from mtkit.interfaces import Mergeable

        if self.merged_adapter is not None:
            raise MtkitError(f"adapter {self.merged_adapter!r} is already merged; call unmerge_adapters() first")
        used = {self.adapter_names[i] if i >= 0 else None for i in self.task_adapter_index.tolist()}
        if len(used) != 1 or None in used or self.ctx.routing != "oracle":
            raise MtkitError(
                "merge_adapters: merging needs oracle routing with every task using one and the same adapter "
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

    def unmerge_adapters(self) -> None:
        """Undo merge_adapters: restore the base weights and the merged adapter's hooks."""
        if self.merged_adapter is None:
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
        self._groups = self._site_groups()
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

    def _task_ids(self, batch: Mapping[str, Any]) -> Tensor:
        ids = batch["input_ids"]
        return torch.full((ids.shape[0],), self.model.task_names.index(self.task), dtype=torch.long, device=ids.device)

    def backbone_output(self, batch: Mapping[str, Any]) -> BackboneOutput:
        return self.model.run_backbone(batch["input_ids"], batch["attention_mask"], self._task_ids(batch))

    def generate(self, batch: Mapping[str, Any], **kwargs: Any) -> Tensor:
        # Routing is decided once from the prompt and reused for every generated token.
        self.model._begin(batch["input_ids"], batch["attention_mask"], self._task_ids(batch))
        return self.model.backbone.generate(batch["input_ids"], batch["attention_mask"], **kwargs)
