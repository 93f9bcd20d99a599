"""Sparse routing over a library: gathering each sample's adapters equals the dense inner-space mix, outputs and gradients."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

from mtkit import ForwardContext, LowRank, Registry, SiteAdapters, TaskInfo, lowrank
from mtkit.api.combiner import GATHER_MIN_ADAPTERS, gathers
from mtkit.model.build import build_model
from mtkit.model.multitask import MultiTaskModel
from mtkit.recipe.resolve import resolve
from tests.conftest import count_calls

LIBRARY = 12
LORA = {"type": "lora", "init": "random", "target_modules": ["query", "value"]}
BOTTLENECK = {"type": "bottleneck", "init": "random", "non_linearity": "gelu"}
INFOS = {"sentiment": TaskInfo("sentiment", 0, ("rotten", "fresh")), "topic": TaskInfo("topic", 1, tuple("abcde"))}


def library(tiny_recipe: dict[str, Any], registry: Registry, family: str, equal_ranks: bool, **params: Any) -> MultiTaskModel:
    recipe = copy.deepcopy(tiny_recipe)
    sizes = [4] * LIBRARY if equal_ranks else [2 + (i % 4) * 2 for i in range(LIBRARY)]
    if family == "lora":
        tables = [{**LORA, "rank": r, **params} for r in sizes]
    else:
        tables = [{**BOTTLENECK, "bottleneck_dim": r, **params} for r in sizes]
    recipe["adapters"] = {"sentiment": tables[0], "topic": tables[1]} | {f"lib{i}": t for i, t in enumerate(tables[2:])}
    return build_model(resolve(recipe, registry, "test"), INFOS).eval()


def top_k_weights(logits: Tensor, k: int) -> Tensor:
    """Softmax over the k largest logits of each row, zeros elsewhere (router-style top-k)."""
    index = logits.topk(k, dim=-1).indices
    mask = torch.zeros_like(logits).scatter(-1, index, 1.0)
    return (logits.masked_fill(mask == 0, float("-inf"))).softmax(-1)


def one_hot(logits: Tensor, k: int) -> Tensor:
    """Oracle-style routing: weight 1 at one adapter per sample (the logits carry no gradient through it)."""
    return torch.zeros_like(logits).scatter(-1, logits.argmax(-1, keepdim=True), 1.0)


def signed(logits: Tensor, k: int) -> Tensor:
    """Top-k weights of either sign (a combiner may subtract an adapter)."""
    return top_k_weights(logits, k) * torch.where(torch.arange(logits.shape[-1]) % 2 == 0, 1.0, -0.5)


ROUTINGS: dict[str, tuple[Callable[[Tensor, int], Tensor], int]] = {
    "top1": (top_k_weights, 1),
    "top2": (top_k_weights, 2),
    "oracle": (one_hot, 1),
    "signed_top2": (signed, 2),
}


def site_of(model: MultiTaskModel) -> SiteAdapters:
    return next(iter(model._sites.values()))


def apply_and_grads(
    model: MultiTaskModel, site: SiteAdapters, routing: str, *, dense: bool, monkeypatch: pytest.MonkeyPatch, batch: int = 6,
    per_token: bool = False,
) -> tuple[Tensor, dict[str, Tensor], int]:
    """y + the routed deltas at one site, the gradients of a loss on it, and how many times the sparse path (gathered
    per sample, or dispatched per token with `per_token`) ran."""
    torch.manual_seed(0)
    shape = model.backbone.sites()[site.site]
    x = torch.randn(batch, 5, shape.in_features, requires_grad=True)
    y = torch.randn(batch, 5, shape.out_features, requires_grad=True)
    logits = torch.randn(batch, *((5,) if per_token else ()), LIBRARY, requires_grad=True)
    make, k = ROUTINGS[routing]
    weights = make(logits, k)
    calls = count_calls(monkeypatch, "mtkit.api.lowrank." + ("dispatched_mix" if per_token else "gather"))
    monkeypatch.setattr("mtkit.api.combiner.gathers", (lambda used, per_sample: False) if dense else gathers)
    model.zero_grad(set_to_none=True)
    out = site.apply(x, y, weights, ForwardContext(num_adapters=LIBRARY), sparse=True)
    (out * torch.linspace(-1, 1, out.shape[-1])).pow(2).sum().backward()
    grads = {"x": x.grad, "y": y.grad, "logits": logits.grad} | {n: p.grad for n, p in model.named_parameters()}
    return out.detach(), {n: g for n, g in grads.items() if g is not None}, calls[0]


@pytest.mark.parametrize("family", ["lora", "bottleneck"])
@pytest.mark.parametrize("equal_ranks", [True, False])
@pytest.mark.parametrize("routing", list(ROUTINGS))
def test_gathered_mix_equals_dense_mix(
    tiny_recipe: dict[str, Any], registry: Registry, monkeypatch: pytest.MonkeyPatch, family: str, equal_ranks: bool, routing: str
) -> None:
    model = library(tiny_recipe, registry, family, equal_ranks)
    site = site_of(model)
    sparse, grads, gathered = apply_and_grads(model, site, routing, dense=False, monkeypatch=monkeypatch)
    dense, dense_grads, none = apply_and_grads(model, site, routing, dense=True, monkeypatch=monkeypatch)
    assert gathered == 1 and none == 0  # the automatic switch gathered here, and the reference did not
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=1e-5)
    assert grads.keys() == dense_grads.keys()
    assert any(n.startswith("adapters.") for n in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, dense_grads[name], atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("family", ["lora", "bottleneck"])
@pytest.mark.parametrize("routing", ["top1", "top2", "signed_top2"])
def test_dispatched_mix_of_per_token_weights_equals_dense_mix(
    tiny_recipe: dict[str, Any], registry: Registry, monkeypatch: pytest.MonkeyPatch, family: str, routing: str
) -> None:
    model = library(tiny_recipe, registry, family, equal_ranks=False)
    site = site_of(model)
    sparse, grads, dispatched = apply_and_grads(model, site, routing, dense=False, monkeypatch=monkeypatch, per_token=True)
    dense, dense_grads, none = apply_and_grads(model, site, routing, dense=True, monkeypatch=monkeypatch, per_token=True)
    assert dispatched == 1 and none == 0  # the automatic switch dispatched here, and the reference did not
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=1e-5)
    assert grads.keys() == dense_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, dense_grads[name], atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("skewed", [False, True])
def test_dispatched_mix_groups_tokens_batched_or_one_adapter_at_a_time(skewed: bool) -> None:
    """Tokens spread evenly over the adapters run batched; most tokens on one adapter run adapter by adapter; both exact."""
    torch.manual_seed(0)
    ranks = [2, 4, 3, 4, 2, 3]
    factors = LowRank(
        reads="input", down=[torch.randn(r, 8) for r in ranks], up=[torch.randn(r, 5) for r in ranks],
        down_bias=[torch.randn(r) for r in ranks], up_bias=[torch.randn(5) for _ in ranks], activation=torch.tanh,
    )
    x = torch.randn(3, 10, 8)
    logits = torch.randn(3, 10, len(ranks)) + (torch.tensor([6.0, 0, 0, 0, 0, 0]) if skewed else 0.0)
    weights = top_k_weights(logits, 2)
    counts = weights.ne(0).flatten(0, 1).sum(0)
    assert (len(ranks) * int(counts.max()) > 2 * int(counts.sum())) == skewed  # which of the two ways runs
    torch.testing.assert_close(lowrank.dispatched_mix(factors, x, x, weights), lowrank.mix(factors, x, x, weights, training=False))


def test_gathered_mix_dropout_draws_a_mask_per_sample_and_adapter() -> None:
    """In training, each (sample, adapter) pair has its own dropout mask over z; on average it is the plain mix."""
    torch.manual_seed(0)
    down = [torch.randn(3, 8), torch.randn(3, 8)]
    factors = LowRank(reads="input", down=down, up=[torch.randn(3, 4), torch.randn(3, 4)], dropout=[0.5, 0.5])
    x = torch.randn(2, 4, 8)
    weights = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    exact = lowrank.mix(factors, x, x, weights, training=False)
    torch.testing.assert_close(lowrank.gathered_mix(factors, x, x, weights, 2, training=False), exact)
    draws = torch.stack([lowrank.gathered_mix(factors, x, x, weights, 2, training=True) for _ in range(4000)])
    assert not torch.allclose(draws[0], draws[1])
    torch.testing.assert_close(draws.mean(0), exact, atol=0.15 * exact.abs().max().item(), rtol=0)
    # Identical adapters in one sample still get different masks: their halves of the output differ.
    twin = LowRank(reads="input", down=[down[0], down[0]], up=[torch.eye(3, 4), torch.eye(3, 4)], dropout=[0.5, 0.5])
    halves = [lowrank.gathered_mix(twin, x, x, w, 1, training=True) for w in (torch.tensor([[1.0, 0.0]] * 2), torch.tensor([[0.0, 1.0]] * 2))]
    assert not torch.allclose(halves[0], halves[1])


def test_sparse_switch_rule() -> None:
    assert not gathers(GATHER_MIN_ADAPTERS - 1, 1)  # a few adapters: the joint inner space
    assert gathers(64, 2) and gathers(32, 1)  # a library routed top-k
    assert not gathers(64, 64)  # dense weights


def test_router_top2_over_a_library_trains_alike_gathered_or_dense(
    tiny_recipe: dict[str, Any], registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole model: a router with top_k = 2 over 12 LoRAs, one training step's loss and gradients, either path."""
    tiny_recipe["combiner"] = {"type": "router", "top_k": 2, "num_layers": 1, "gumbel": False}
    model = library(tiny_recipe, registry, "lora", equal_ranks=False)
    with torch.no_grad():  # spread the routing of random inputs so that the batch uses many adapters
        model.combiner.mlp[-1].weight.normal_(std=2.0)
    torch.manual_seed(0)
    enc = {"input_ids": torch.randint(1000, 20000, (16, 6)), "attention_mask": torch.ones(16, 6, dtype=torch.long)}
    tasks = torch.arange(16) % 2
    results = []
    calls = count_calls(monkeypatch, "mtkit.api.lowrank.gather")
    for dense in (False, True):
        monkeypatch.setattr("mtkit.api.combiner.gathers", (lambda used, per_sample: False) if dense else gathers)
        model.train()
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        with model.use_combiner("combiner"):
            hidden = model.run_backbone(enc["input_ids"], enc["attention_mask"], tasks).hidden
        hidden.pow(2).mean().backward()
        results.append((hidden.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (sparse, grads), (dense, dense_grads) = results
    assert calls[0] == len(model._sites)  # the first pass gathered at every site, the reference at none
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=1e-5)
    assert grads.keys() == dense_grads.keys() and any(n.startswith("combiner.") for n in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, dense_grads[name], atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")
