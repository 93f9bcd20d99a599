"""The assembled model on a tiny random BERT: hooks, oracle routing in mixed batches, LoRA maths."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from mtkit import ForwardContext, Registry, TaskInfo
from mtkit.model.build import build_model
from mtkit.model.multitask import MultiTaskModel
from mtkit.recipe.resolve import resolve


def make_model(recipe: dict[str, Any], registry: Registry, **lora: Any) -> MultiTaskModel:
    recipe = copy.deepcopy(recipe)
    for table in recipe["adapters"].values():
        table.update(lora)
    resolved = resolve(recipe, registry, "test")
    infos = {"sentiment": TaskInfo("sentiment", 0, ("rotten", "fresh")), "topic": TaskInfo("topic", 1, tuple("abcde"))}
    model = build_model(resolved, infos)
    return model.eval()


def encode(model: MultiTaskModel, texts: list[str]) -> dict[str, torch.Tensor]:
    enc = model.backbone.tokenizer(texts, padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


TEXTS = ["a gripping, funny film", "shares fell sharply on monday", "dull and far too long", "the minister resigned"]


def test_model_zero_init_lora_leaves_backbone_output_unchanged(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    model = make_model(tiny_recipe, registry)
    batch = encode(model, TEXTS)
    tasks = torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        adapted = model.run_backbone(batch["input_ids"], batch["attention_mask"], tasks).hidden
        with model.adapters_disabled():
            base = model.run_backbone(batch["input_ids"], batch["attention_mask"], tasks).hidden
    torch.testing.assert_close(adapted, base, rtol=0, atol=0)


def test_model_backbone_parameter_names_are_untouched(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    model = make_model(tiny_recipe, registry)
    names = [n for n, _ in model.backbone.named_parameters()]
    assert "model.encoder.layer.0.attention.self.query.weight" in names
    assert not any("lora" in n for n in names)
    assert "adapters.topic.lora_a.model__encoder__layer__1__attention__self__value" in dict(model.named_parameters())


def test_model_oracle_mixed_batch_equals_each_sample_alone(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    model = make_model(tiny_recipe, registry, init="random")
    batch = encode(model, TEXTS)
    tasks = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        mixed = model.run_backbone(batch["input_ids"], batch["attention_mask"], tasks).hidden
        for i in range(len(TEXTS)):
            alone = encode(model, [TEXTS[i]])
            single = model.run_backbone(alone["input_ids"], alone["attention_mask"], tasks[i : i + 1]).hidden
            width = single.shape[1]
            torch.testing.assert_close(mixed[i, :width], single[0], atol=1e-5, rtol=1e-5)
        with model.adapters_disabled():
            base = model.run_backbone(batch["input_ids"], batch["attention_mask"], tasks).hidden
    assert (mixed - base).abs().max() > 1e-3  # the random-init adapters really act


@pytest.mark.parametrize("per_token", [False, True])
def test_model_lora_mix_equals_weighted_sum_of_single_deltas(tiny_recipe: dict[str, Any], registry: Registry, per_token: bool) -> None:
    model = make_model(tiny_recipe, registry, init="random", dropout=0.0)
    adapters = list(model.adapters.values())
    cls = type(adapters[0])
    site = adapters[0].site_names[0]
    torch.manual_seed(0)
    x = torch.randn(3, 5, 32)
    y = torch.randn(3, 5, 32)
    weights = torch.rand(3, 5, 2) if per_token else torch.rand(3, 2)
    ctx = ForwardContext()
    mixed = cls.mix(adapters, site, x, y, weights, ctx)
    w = weights if per_token else weights[:, None, :]
    expected = sum(w[..., k : k + 1] * a.delta(site, x, y, ctx) for k, a in enumerate(adapters))
    torch.testing.assert_close(mixed, expected, atol=1e-6, rtol=1e-5)
    stacked = cls.stack(adapters, site, x, y, ctx)
    for k, adapter in enumerate(adapters):
        torch.testing.assert_close(stacked[:, :, k], adapter.delta(site, x, y, ctx), atol=1e-6, rtol=1e-5)


def test_model_lora_delta_matches_hand_written_reference(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    model = make_model(tiny_recipe, registry, init="random", alpha=8)
    lora = model.adapters["topic"]
    site = lora.site_names[0]
    a, b = lora.matrices(site)
    x = torch.randn(2, 3, 32)
    expected = (x @ a.T @ b.T) * (8 / 4)
    torch.testing.assert_close(lora.delta(site, x, x, ForwardContext()), expected)


def test_model_merged_lora_equals_unmerged(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    recipe = copy.deepcopy(tiny_recipe)
    del recipe["adapters"]["sentiment"]
    recipe["tasks"]["sentiment"]["adapter"] = "topic"
    model = make_model(recipe, registry, init="random")
    batch = encode(model, TEXTS)
    tasks = torch.tensor([1, 1, 1, 1])
    lora = model.adapters["topic"]
    with torch.no_grad():
        unmerged = model.run_backbone(batch["input_ids"], batch["attention_mask"], tasks).hidden
        for site in lora.site_names:
            lora.merge(site, model.backbone.get_submodule(site))
        with model.adapters_disabled():
            merged = model.run_backbone(batch["input_ids"], batch["attention_mask"], tasks).hidden
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-4)
