"""`fusion_attention` in the adapters' inner space equals the materialised computation, outputs and gradients.

The reference is AdapterFusion as computed before the inner-space path: every delta materialised with
`SiteAdapters.stack` (B, T, K, D), keys and values by applying the fusion's Linear layers to each.
"""

from __future__ import annotations

import copy
import types
from typing import Any

import pytest
import torch
from mtkit_combiners._routing import add_own_bias, task_rows
from torch import Tensor

from mtkit import ForwardContext, Registry, SiteAdapters, TaskInfo, site_key
from mtkit.model.build import build_model
from mtkit.model.multitask import MultiTaskModel
from mtkit.recipe.resolve import resolve

from .conftest import encode

LORA = {"type": "lora", "rank": 4, "init": "random", "target_modules": ["query", "value"]}
BOTTLENECK = {"type": "bottleneck", "bottleneck_dim": 6, "init": "random", "placement": "custom", "target_modules": ["query", "value"]}
HYPER = {"type": "hyper_lora", "rank": 2, "init": "random", "target_modules": ["query", "value"]}

FAMILIES = {
    "lora": {"sentiment": LORA, "topic": {**LORA, "rank": 2}, "extra": LORA},
    "bottleneck": {"sentiment": BOTTLENECK, "topic": {**BOTTLENECK, "bottleneck_dim": 3}, "extra": BOTTLENECK},
    # One site, three families in interleaved columns: factored LoRA and bottleneck, materialised hyper_lora.
    "mixed": {"sentiment": LORA, "topic": HYPER, "extra": BOTTLENECK, "extra2": {**LORA, "rank": 2}},
    "hyper_lora": {"sentiment": HYPER, "topic": HYPER},
}


def reference_fusion(fusion: Any, y: Tensor, deltas: Tensor, temperature: Tensor, own: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """AdapterFusion on materialised deltas (B, T, K, D)."""
    scores = torch.einsum("btp,btkp->btk", fusion.query(y), fusion.key(deltas))
    if fusion.own is not None and own is not None:
        scores = add_own_bias(scores, fusion.own, own)
    attention = (scores / temperature).softmax(-1)
    values = deltas if fusion.value is None else fusion.value(deltas)
    return torch.einsum("btk,btkd->btd", attention, values), attention


def reference_combine(self: Any, site: str, x: Tensor, y: Tensor, adapters: SiteAdapters, ctx: ForwardContext) -> Tensor:
    deltas = adapters.stack(x, y, ctx)
    fusions = self.fusions[site_key(site)]
    if not self.config.per_task:
        fused, attention = reference_fusion(fusions[0], y, deltas, self.temperature)
    else:
        fused, attention = torch.empty_like(y), deltas.new_empty(deltas.shape[:3])
        own = ctx.own_adapter_weights()[:, adapters.columns]
        for task, rows in task_rows(ctx, y.device):
            fused[rows], attention[rows] = reference_fusion(fusions[task], y[rows], deltas[rows], self.temperature, own[rows])
    self.record(adapters.to_columns(attention), ctx)
    return y + fused


def fusion_model(tiny_recipe: dict[str, Any], registry: Registry, adapters: dict[str, Any], **fusion: Any) -> MultiTaskModel:
    recipe = copy.deepcopy(tiny_recipe)
    recipe["adapters"] = copy.deepcopy(adapters)
    recipe["combiner"] = {"type": "fusion_attention", **fusion}
    infos = {"sentiment": TaskInfo("sentiment", 0, ("rotten", "fresh")), "topic": TaskInfo("topic", 1, tuple("abcde"))}
    model = build_model(resolve(recipe, registry, "test"), infos)
    torch.manual_seed(1)
    with torch.no_grad():  # leave the neutral start (zero query, identity value) so every term of the fusion matters
        for name, p in model.combiner.named_parameters():
            p.add_(torch.randn_like(p) * (0.3 if "value" in name else 0.5))
    return model


def run(model: MultiTaskModel, tasks: Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
    ids, mask = encode(model)
    torch.manual_seed(seed)  # the same backbone dropout masks in both computations
    with model.use_combiner("combiner"), model.recording_routing() as log:
        hidden = model.run_backbone(ids, mask, tasks).hidden
    routing = log[0] if log else torch.empty(0)
    return hidden, routing


def outputs_and_grads(model: MultiTaskModel, tasks: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    model.zero_grad(set_to_none=True)
    hidden, _ = run(model, tasks)
    hidden.pow(2).sum().backward()
    return hidden.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_matches_reference(model: MultiTaskModel, tasks: Tensor) -> None:
    reference = copy.deepcopy(model)
    reference.combiner.combine = types.MethodType(reference_combine, reference.combiner)
    if not model.training:
        with torch.no_grad():
            (mine, routing), (theirs, their_routing) = run(model, tasks), run(reference, tasks)
        torch.testing.assert_close(routing, their_routing, atol=1e-5, rtol=1e-5)
    mine, grads = outputs_and_grads(model, tasks)
    theirs, their_grads = outputs_and_grads(reference, tasks)
    torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
    assert grads.keys() == their_grads.keys() and any(n.startswith("combiner.") for n in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, their_grads[name], atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("family", ["lora", "bottleneck", "mixed"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_fusion_inner_space_equals_materialised(tiny_recipe: dict[str, Any], registry: Registry, family: str, mode: str) -> None:
    model = fusion_model(tiny_recipe, registry, FAMILIES[family]).train(mode == "train")
    assert_matches_reference(model, torch.tensor([0, 1, 0, 1]))


@pytest.mark.parametrize("options", [{"value_projection": False}, {"projection_dim": 4}, {"projection_dim": 64, "temperature": 0.5}])
def test_fusion_inner_space_equals_materialised_for_each_option(tiny_recipe: dict[str, Any], registry: Registry, options: dict[str, Any]) -> None:
    # projection_dim 4 takes the unfolded query (cheaper there), 64 and the site width the folded one.
    model = fusion_model(tiny_recipe, registry, FAMILIES["lora"], **options).train()
    assert_matches_reference(model, torch.tensor([0, 1, 0, 1]))


@pytest.mark.parametrize("family", ["lora", "mixed"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_fusion_inner_space_per_task_equals_materialised(tiny_recipe: dict[str, Any], registry: Registry, family: str, mode: str) -> None:
    model = fusion_model(tiny_recipe, registry, FAMILIES[family], per_task=True, own_adapter_init=2.0).train(mode == "train")
    assert_matches_reference(model, torch.tensor([1, 1, 0, 1]))


def test_fusion_inner_space_with_lora_dropout_in_training(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    """Each LoRA draws its own dropout mask on x in the inner space too: equal to the reference under the same draws."""
    adapters = {n: {**LORA, "dropout": 0.3} for n in ("sentiment", "topic")}
    model = fusion_model(tiny_recipe, registry, adapters).train()
    tasks = torch.tensor([0, 1, 0, 1])
    reference = copy.deepcopy(model)
    reference.combiner.combine = types.MethodType(reference_combine, reference.combiner)
    # Both draw the same masks in the same order: one per adapter over the site input, before anything else random.
    (mine, _), (theirs, _) = run(model, tasks, seed=3), run(reference, tasks, seed=3)
    torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
    (again, _) = run(model, tasks, seed=4)
    assert not torch.allclose(again, mine, atol=1e-4)  # the masks really act


def test_fusion_inner_space_is_used_exactly_when_every_family_is_factored(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    seen: list[bool] = []
    for family, expected in (("lora", True), ("bottleneck", True), ("hyper_lora", False)):
        model = fusion_model(tiny_recipe, registry, FAMILIES[family]).eval()
        sites = model._sites
        x = torch.randn(2, 3, 32)
        ctx = ForwardContext(num_adapters=len(model.adapter_names))
        deltas = next(iter(sites.values())).deltas(x, x, ctx)
        seen.append(deltas.factored)
        assert deltas.factored is expected, family
        torch.testing.assert_close(deltas.materialise(), next(iter(sites.values())).stack(x, x, ctx), atol=1e-6, rtol=1e-5)
    mixed = fusion_model(tiny_recipe, registry, FAMILIES["mixed"]).eval()
    assert not next(iter(mixed._sites.values())).deltas(torch.randn(2, 3, 32), torch.randn(2, 3, 32), ForwardContext(num_adapters=4)).factored


def test_fusion_inner_space_never_materialises_deltas(tiny_recipe: dict[str, Any], registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over factored families no (B, T, K, D) tensor is formed: the families' `stack` is never called."""
    model = fusion_model(tiny_recipe, registry, FAMILIES["lora"]).eval()
    family = type(model.adapters["sentiment"])

    def refuse(*args: Any, **kwargs: Any) -> Tensor:
        raise AssertionError("fusion materialised the deltas")

    monkeypatch.setattr(family, "stack", classmethod(refuse))
    monkeypatch.setattr("mtkit.api.lowrank.stack_inner", refuse)
    with torch.no_grad():
        run(model, torch.tensor([0, 1, 0, 1]))
