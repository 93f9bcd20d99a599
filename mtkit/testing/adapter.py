"""The adapter contract: checks every adapter (built-in or third-party) must pass.

Run them all on one adapter type and one backbone table:

    from mtkit.testing.adapter import check_adapter
    check_adapter("lora", {"rank": 4}, backbone=TINY_BERT, nonidentity={"init": "random"})

or one at a time (for one pytest test per check) with `AdapterHarness` and `ADAPTER_CHECKS`.
`params` must give an adapter that starts as the identity; `nonidentity` (merged into params)
one that does not. The backbone is built through the registry from a recipe-style table, e.g. a
tiny random model: {"type": "hf_encoder", "model": ..., "random_init": True, "config_overrides": {...}}.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mtkit.api.adapter import Adapter, Mergeable
from mtkit.api.context import ForwardContext
from mtkit.api.interfaces import Backbone, TaskInfo
from mtkit.api.registry import Registry, load_registry
from mtkit.api.sites import select_sites
from mtkit.model.multitask import MultiTaskModel

__all__ = ["ADAPTER_CHECKS", "AdapterHarness", "check_adapter"]

TEXTS = ["a gripping, funny film", "shares fell sharply on monday", "dull and far too long", "the minister resigned today"]


class AdapterHarness:
    """One backbone with one adapter attached by the real MultiTaskModel hooks (oracle routing)."""

    def __init__(
        self,
        adapter: type[Adapter] | str,
        params: Mapping[str, Any],
        *,
        backbone: Mapping[str, Any],
        nonidentity: Mapping[str, Any] | None = None,
        registry: Registry | None = None,
        seed: int = 0,
    ) -> None:
        self.registry = registry or load_registry()
        self.adapter_cls: type[Adapter] = (
            self.registry.component_class("adapter", adapter) if isinstance(adapter, str) else adapter
        )
        self.params, self.nonidentity = dict(params), dict(nonidentity or {})
        self.backbone_table, self.seed = dict(backbone), seed
        torch.manual_seed(seed)
        table = dict(backbone)
        cls = self.registry.component_class("backbone", table.pop("type"))
        self.backbone: Backbone = cls(cls.config_class.model_validate(table))
        self.backbone.requires_grad_(False).eval()
        tokenizer = self.backbone.tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
        self.input_ids, self.attention_mask = enc["input_ids"], enc["attention_mask"]
        self.task_ids = torch.zeros(len(TEXTS), dtype=torch.long)

    def make_adapter(self, *, identity: bool = True, seed: int | None = None) -> Adapter:
        params = dict(self.params) if identity else {**self.params, **self.nonidentity}
        config = self.adapter_cls.config_class.model_validate(params)
        sites = select_sites(config, self.backbone.sites())
        assert sites, f"{self.adapter_cls.name}: params {params!r} select no site of the backbone"
        torch.manual_seed(self.seed + 1 if seed is None else seed)
        return self.adapter_cls(config, sites=sites, context_size=self.backbone.hidden_size)

    def model(self, adapter: Adapter) -> MultiTaskModel:
        """The backbone with `adapter` attached (routing: every sample uses it)."""
        from mtkit.api.combiner import CombinerSetup
        from mtkit.recipe import defaults
        from mtkit.recipe.resolve import ORACLE_PATH

        combiner_cls = self.registry.component_class("combiner", defaults.ORACLE_COMBINER)
        setup = CombinerSetup(
            adapter_names=("a",), task_names=("t",), sites=self.backbone.sites(), hidden_size=self.backbone.hidden_size, task_adapters={"t": "a"}
        )
        combiner = combiner_cls(combiner_cls.config_class.model_validate({}), setup=setup)
        head_cls = self.registry.component_class("head", "classification")
        head = head_cls(head_cls.config_class.model_validate({}), backbone=self.backbone, task=TaskInfo("t", 0, ("x", "y")))
        return MultiTaskModel(self.backbone, {"a": adapter}, {ORACLE_PATH: combiner}, {"t": head}, {"t": "a"}, active=ORACLE_PATH).eval()

    def outputs(self, model: MultiTaskModel, *, adapters: bool = True) -> Tensor:
        """The backbone's outputs (LM logits if any, else last hidden states) on the test texts."""
        with torch.no_grad():
            if adapters:
                out = model.run_backbone(self.input_ids, self.attention_mask, self.task_ids)
            else:
                with model.adapters_disabled():
                    out = model.run_backbone(self.input_ids, self.attention_mask, self.task_ids)
        return out.logits if out.logits is not None else out.hidden

    def detach(self, model: MultiTaskModel) -> None:
        """Remove the model's hooks so the shared backbone is bare again."""
        model.unmerge_adapters()
        for handle in model._handles:
            handle.remove()
        model._handles = []


def _close(actual: Tensor, expected: Tensor, atol: float, what: str) -> None:
    diff = (actual - expected).abs().max().item()
    assert diff <= atol, f"{what}: max difference {diff:.3g} > {atol:.3g}"


def check_adapter_config(h: AdapterHarness) -> None:
    """The class's ClassVars and config class follow the component contract (described, frozen, strict)."""
    from mtkit.testing._common import check_config

    check_config(h.adapter_cls, "adapter", h.params)


def check_identity_at_init(h: AdapterHarness) -> None:
    """With its identity init the adapter leaves the backbone's outputs exactly as they were."""
    model = h.model(h.make_adapter())
    try:
        _close(h.outputs(model), h.outputs(model, adapters=False), 0.0, "identity init changed the outputs")
    finally:
        h.detach(model)


def check_nonidentity_changes_outputs(h: AdapterHarness) -> None:
    """A non-identity init changes the outputs (the adapter really acts at its sites)."""
    model = h.model(h.make_adapter(identity=False))
    try:
        diff = (h.outputs(model) - h.outputs(model, adapters=False)).abs().max().item()
        assert diff > 1e-5, f"non-identity params {h.nonidentity!r} left the outputs unchanged (max difference {diff:.3g})"
    finally:
        h.detach(model)


def check_training_changes_only_adapter(h: AdapterHarness) -> None:
    """A few optimiser steps change the adapter's parameters and leave the backbone bit-identical."""
    adapter = h.make_adapter()
    model = h.model(adapter)
    before_backbone = {n: p.detach().clone() for n, p in h.backbone.state_dict().items()}
    before_adapter = {n: p.detach().clone() for n, p in adapter.named_parameters()}
    assert before_adapter, "the adapter has no parameters"
    optimizer = torch.optim.Adam(adapter.parameters(), lr=1e-2)
    model.train()
    try:
        torch.manual_seed(0)
        target = None
        for _ in range(3):
            out = model.run_backbone(h.input_ids, h.attention_mask, h.task_ids)
            _check_aux_losses(adapter)
            result = out.logits if out.logits is not None else out.hidden
            target = torch.randn_like(result) if target is None else target
            loss = (result - target).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        model.eval()
        h.detach(model)
    for name, value in h.backbone.state_dict().items():
        assert torch.equal(value, before_backbone[name]), f"training the adapter changed backbone tensor {name}"
    changed = [n for n, p in adapter.named_parameters() if not torch.equal(p.detach(), before_adapter[n])]
    assert changed, "three optimiser steps changed none of the adapter's parameters (no gradient reaches them?)"
    assert all(torch.isfinite(p).all() for p in adapter.parameters()), "adapter parameters became non-finite"


def _check_aux_losses(adapter: Adapter) -> None:
    unknown = sorted(set(adapter.aux_losses) - set(adapter.aux_loss_names))
    assert not unknown, f"aux losses {unknown} are not declared in aux_loss_names {adapter.aux_loss_names}"
    for name, value in adapter.aux_losses.items():
        assert value.dim() == 0 and torch.isfinite(value), f"aux loss {name!r} is not a finite scalar"


def check_save_load_roundtrip(h: AdapterHarness) -> None:
    """Saving the adapter's state (safetensors) and loading it into a fresh one reproduces the outputs exactly."""
    from safetensors.torch import load_file, save_file

    adapter = h.make_adapter(identity=False)
    model = h.model(adapter)
    try:
        expected = h.outputs(model)
    finally:
        h.detach(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "adapter.safetensors"
        save_file({k: v.contiguous() for k, v in adapter.state_dict().items()}, str(path))
        fresh = h.make_adapter(identity=False, seed=h.seed + 99)
        fresh.load_state_dict(load_file(str(path)), strict=True)
    model = h.model(fresh)
    try:
        _close(h.outputs(model), expected, 0.0, "outputs after save and load differ")
    finally:
        h.detach(model)


def check_merge_equals_unmerged(h: AdapterHarness) -> None:
    """Where the adapter is Mergeable: merged outputs equal unmerged ones, and unmerging restores the base."""
    adapter = h.make_adapter(identity=False)
    if not isinstance(adapter, Mergeable):
        return
    model = h.model(adapter)
    base = {n: p.detach().clone() for n, p in h.backbone.state_dict().items()}
    try:
        unmerged = h.outputs(model)
        model.merge_adapters()
        merged = h.outputs(model)
        _close(merged, unmerged, 1e-4 * max(1.0, unmerged.abs().max().item()), "merged outputs differ from unmerged")
        model.unmerge_adapters()
        _close(h.outputs(model), unmerged, 1e-4 * max(1.0, unmerged.abs().max().item()), "outputs after unmerge differ")
    finally:
        h.detach(model)
    for name, value in h.backbone.state_dict().items():
        _close(value, base[name], 1e-5, f"unmerge did not restore backbone tensor {name}")


def check_mix_and_stack_match_single_deltas(h: AdapterHarness) -> None:
    """The batched `mix` and `stack` of K adapters equal the per-adapter deltas, weighted or stacked."""
    adapters = [h.make_adapter(identity=False, seed=h.seed + 10 + k) for k in range(3)]
    for a in adapters:
        a.eval()
    site = adapters[0].site_names[0]
    # Fill the context the way the model does (representations, caches) with the first adapter attached.
    model = h.model(adapters[0])
    try:
        with torch.no_grad():
            model.run_backbone(h.input_ids, h.attention_mask, h.task_ids)
    finally:
        h.detach(model)
    ctx: ForwardContext = copy.copy(model.ctx)
    torch.manual_seed(0)
    sites = h.backbone.sites()
    batch, tokens = h.input_ids.shape
    x = torch.randn(batch, tokens, sites[site].in_features)
    y = torch.randn(batch, tokens, sites[site].out_features)
    with torch.no_grad():
        singles = [a.delta(site, x, y, ctx) for a in adapters]
        for weights in (torch.rand(batch, 3), torch.rand(batch, tokens, 3)):
            expected = sum(
                (weights[..., k, None, None] if weights.dim() == 2 else weights[..., k, None]) * d for k, d in enumerate(singles)
            )
            mixed = h.adapter_cls.mix(adapters, site, x, y, weights, ctx)
            _close(mixed, expected, 1e-5 * max(1.0, expected.abs().max().item()), f"{h.adapter_cls.name}.mix != weighted deltas")
            one = h.adapter_cls.mix(adapters[:1], site, x, y, weights[..., :1], ctx)
            w0 = weights[..., 0, None, None] if weights.dim() == 2 else weights[..., 0, None]
            _close(one, w0 * singles[0], 1e-5 * max(1.0, singles[0].abs().max().item()), "mix of one adapter != its weighted delta")
        stacked = h.adapter_cls.stack(adapters, site, x, y, ctx)
        _close(stacked, torch.stack(singles, dim=2), 1e-5, f"{h.adapter_cls.name}.stack != the deltas")


ADAPTER_CHECKS: dict[str, Callable[[AdapterHarness], None]] = {
    "config": check_adapter_config,
    "identity_at_init": check_identity_at_init,
    "nonidentity_changes_outputs": check_nonidentity_changes_outputs,
    "training_changes_only_adapter": check_training_changes_only_adapter,
    "save_load_roundtrip": check_save_load_roundtrip,
    "merge_equals_unmerged": check_merge_equals_unmerged,
    "mix_and_stack_match_single_deltas": check_mix_and_stack_match_single_deltas,
}


def check_adapter(
    adapter: type[Adapter] | str,
    params: Mapping[str, Any],
    *,
    backbone: Mapping[str, Any],
    nonidentity: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
) -> None:
    """Run every contract check; raises AssertionError naming the first that fails."""
    harness = AdapterHarness(adapter, params, backbone=backbone, nonidentity=nonidentity, registry=registry)
    for check in ADAPTER_CHECKS.values():
        check(harness)
