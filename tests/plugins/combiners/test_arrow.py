"""`arrow`: zero-shot per-token routing by the LoRAs' top right singular vectors, against real PEFT's Arrow."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from mtkit_combiners.arrow import top_right_singular_vector
from peft import ArrowConfig, create_arrow_model

from mtkit import MtkitError, Registry
from mtkit.model.build import build_model
from mtkit.recipe.resolve import resolve

from .conftest import Builder, hidden, recorded
from .peft_library import TASKS, hf_model, library_model, mtkit_hidden, peft_hidden, save_library

ALPHAS = {"t0": 8.0, "t1": 4.0, "t2": 12.0, "t3": 6.0}


@pytest.mark.parametrize(
    ("top_k", "temperature", "gks"),
    [(2, 0.7, False), (1, 1.0, False), (3, 0.5, True)],
    ids=["top2", "top1", "top3_genknowsub"],
)
def test_arrow_outputs_equal_peft_arrow(top_k: int, temperature: float, gks: bool, tmp_path: Path, registry: Registry) -> None:
    folders = save_library(tmp_path / "lib", ALPHAS | ({"general": 5.0} if gks else {}))
    tasks = [str(folders[name]) for name in ALPHAS]
    config = ArrowConfig(top_k=top_k, router_temperature=temperature, use_gks=gks, rng_seed=0)
    peft_model = create_arrow_model(copy.deepcopy(hf_model()), tasks, config, general_adapter_paths=[str(folders["general"])] if gks else None)
    theirs = peft_hidden(peft_model)

    combiner = {"type": "arrow", "top_k": top_k, "temperature": temperature, **({"general_adapters": ["general"]} if gks else {})}
    model = library_model(registry, tmp_path / "lib", combiner)
    ours = mtkit_hidden(model)
    assert (ours - mtkit_hidden(model, routing="oracle")).abs().max() > 1e-3  # the routed LoRAs really act
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_top_right_singular_vector_is_the_svd_of_the_product() -> None:
    a, b = torch.randn(3, 20, dtype=torch.float64), torch.randn(16, 3, dtype=torch.float64)
    expected = torch.linalg.svd(b @ a).Vh[0]
    v = top_right_singular_vector(a, b)
    torch.testing.assert_close(v.abs(), expected.abs(), atol=1e-10, rtol=0)  # a singular vector's sign is arbitrary
    assert abs(float(v @ expected)) == pytest.approx(1.0, abs=1e-10)


def test_arrow_weights_are_per_token_top_k_and_sum_to_one(build: Builder) -> None:
    model = build({"type": "arrow", "top_k": 2}, adapters=4)
    combiner, captured = model.combiner, []
    original = combiner.record
    combiner.record = lambda weights, ctx: (captured.append(weights), original(weights, ctx))  # type: ignore[method-assign]
    hidden(model, torch.tensor([0, 1, 0, 1]))
    del combiner.record
    assert captured and all(w.dim() == 3 and w.shape[-1] == 4 for w in captured)
    for w in captured:
        assert torch.all(w.ne(0).sum(-1) == 2)  # exactly top_k LoRAs per token
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))
    (routing,) = recorded(model)
    assert routing.shape == (4, 4)


def test_arrow_has_no_parameters_and_computes_prototypes_once(build: Builder) -> None:
    model = build({"type": "arrow", "top_k": 1}, adapters=3)
    assert not list(model.combiner.parameters())
    tasks = torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        first = hidden(model, tasks)
        prototypes = {site: state.prototypes for site, state in model.combiner._sites.items()}
        hidden(model, tasks)
    assert prototypes and all(model.combiner._sites[s].prototypes is p for s, p in prototypes.items())  # cached
    # New weights (an optimiser step, a loaded checkpoint) give new prototypes: as a model built with them from scratch.
    with torch.no_grad():
        for adapter in model.adapters.values():
            for p in adapter.parameters():
                p.mul_(-0.5).add_(0.01)
        changed = hidden(model, tasks)
        fresh = copy.deepcopy(model)
        fresh.combiner._sites.clear()
        torch.testing.assert_close(changed, hidden(fresh, tasks), atol=1e-6, rtol=0)
    assert (changed - first).abs().max() > 1e-4


def test_arrow_routes_each_token_to_the_lora_whose_direction_it_follows(build: Builder) -> None:
    model = build({"type": "arrow", "top_k": 1, "temperature": 0.01}, adapters=3)
    site = next(iter(model.site_adapters()))
    adapters = model.site_adapters()[site]
    state = model.combiner._site(site, adapters)
    assert state is not None
    x = torch.stack([3.0 * state.prototypes[2], -2.0 * state.prototypes[0]])[:, None, :]  # (B=2, T=1, D): opposite sign too
    captured = []
    model.combiner.record = lambda weights, ctx: captured.append(weights)  # type: ignore[method-assign]
    y = torch.zeros(2, 1, model.backbone.get_submodule(site).out_features)
    with torch.no_grad():
        model.combiner.combine(site, x, y, adapters, model.ctx)
    assert captured[0][:, 0].argmax(-1).tolist() == [2, 0]


def test_arrow_rejects_unknown_general_adapters_and_non_lora_adapters(build: Builder, tiny_recipe: dict[str, Any], registry: Registry) -> None:
    with pytest.raises(MtkitError, match=r"^test: combiner\.general_adapters: 'nope' is not an adapter of the recipe \(adapters: sentiment, topic\)"):
        build({"type": "arrow", "general_adapters": ["nope"]})
    with pytest.raises(MtkitError, match="every adapter is a general one"):
        build({"type": "arrow", "general_adapters": ["sentiment", "topic"]})
    tiny_recipe["adapters"]["topic"] = {"type": "bottleneck", "placement": "custom", "target_modules": ["query", "value"]}
    tiny_recipe["combiner"] = {"type": "arrow"}
    model = build_model(resolve(tiny_recipe, registry, "test"), dict(TASKS)).eval()
    with pytest.raises(MtkitError, match=r"combiner 'arrow' reads LoRA weights, but adapter 'topic' \(bottleneck\) has no LoRA factors"):
        mtkit_hidden(model)
