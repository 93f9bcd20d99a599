"""`router`: an MLP on a pooled representation; Gumbel-softmax training, argmax/top-k evaluation, aux losses."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from mtkit_adapters.lora import LoraAdapter
from mtkit_combiners.config import RouterCombinerConfig
from mtkit_combiners.router import RouterCombiner

from mtkit import CombinerSetup, ForwardContext

from .conftest import TEXTS, Builder, hidden, recorded


def favour(model: torch.nn.Module, column: int) -> None:
    """Make the router's last layer pick `column` for every input."""
    last = model.combiner.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-30.0)
        last.bias[column] = 30.0


def test_router_one_hot_equals_single_adapter(build: Builder) -> None:
    model = build({"type": "router"})
    favour(model, 1)
    with torch.no_grad():
        learned = hidden(model, torch.tensor([0, 0, 1, 0]))
        oracle = hidden(model, torch.tensor([1, 1, 1, 1]), routing="oracle")
    torch.testing.assert_close(learned, oracle, atol=1e-5, rtol=1e-5)


def test_router_evaluation_is_argmax_of_recorded_probabilities(build: Builder) -> None:
    model = build({"type": "router"}, adapters=3)
    with torch.no_grad():
        learned = hidden(model, torch.zeros(4, dtype=torch.long))
    (probs,) = recorded(model)  # recorded once per forward
    assert probs.shape == (len(TEXTS), 3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(TEXTS)))
    # Each sample must equal running it alone with its argmax adapter (tasks 0/1 map to adapters 0/1).
    chosen = probs.argmax(-1)
    for column in chosen.unique().tolist():
        favour(model, column)
        with torch.no_grad():
            single = hidden(model, torch.zeros(4, dtype=torch.long))
        rows = chosen == column
        torch.testing.assert_close(learned[rows], single[rows], atol=1e-5, rtol=1e-5)


def test_router_gradients_reach_the_mlp(build: Builder) -> None:
    model = build({"type": "router", "dropout": 0.0}).train()
    hidden(model, torch.tensor([0, 1, 0, 1])).pow(2).sum().backward()
    for name, p in model.combiner.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def make_router(k: int = 4, size: int = 8, **params: object) -> RouterCombiner:
    config = RouterCombinerConfig.model_validate({"dropout": 0.0, **params})
    setup = CombinerSetup(adapter_names=tuple(f"a{i}" for i in range(k)), task_names=("t",), sites={}, hidden_size=size)
    return RouterCombiner(config, setup=setup)


def route(router: RouterCombiner, representation: torch.Tensor, own: torch.Tensor | None = None) -> torch.Tensor:
    """One forward's routing weights for these representations; the router's aux losses are then in router.aux_losses."""
    ctx = ForwardContext(attention_mask=torch.ones(len(representation), 3), own_adapters=own, num_adapters=router.num_adapters)
    ctx.representations[router.config.source] = representation
    router.start_forward(ctx)
    x = torch.zeros(len(representation), 3, 2)
    weights = router.weights("site", x, x, ctx)
    assert weights is not None
    return weights


@pytest.mark.parametrize("top_k", [None, 2])
def test_router_hard_gumbel_is_one_hot_forward_and_differentiable(top_k: int | None) -> None:
    torch.manual_seed(0)
    router = make_router(hard=True, top_k=top_k).train()
    weights = route(router, torch.randn(16, 8))
    k = top_k or 1
    values = weights.detach()
    assert ((values == 0) | ((values - 1 / k).abs() < 1e-6)).all()
    assert torch.equal((weights > 0).sum(-1), torch.full((16,), k))
    (weights * torch.randn(16, 4)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in router.mlp.parameters())


def test_router_top_k_keeps_k_adapters_and_skips_the_rest_at_evaluation(build: Builder) -> None:
    model = build({"type": "router", "top_k": 2}, adapters=4)
    calls: list[int] = []
    original = LoraAdapter.mix.__func__  # type: ignore[attr-defined]

    def counting(cls: type, adapters: list, *args: object) -> torch.Tensor:
        calls.append(len(adapters))
        return original(cls, adapters, *args)
    with torch.no_grad(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(LoraAdapter, "mix", classmethod(counting))
        hidden(model, torch.zeros(4, dtype=torch.long), texts=TEXTS[:1])
    assert calls and set(calls) == {2}  # one sample, top-2: only its two adapters are computed
    (probs,) = recorded(model)
    assert probs.count_nonzero() == 4  # the probabilities are recorded; the weights kept two of them


def test_router_mixes_adapters_batched_without_single_deltas(build: Builder) -> None:
    model = build({"type": "router"}, adapters=5)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LoraAdapter, "delta", lambda *a: pytest.fail("a separate pass per adapter"))
        hidden(model.train(), torch.zeros(4, dtype=torch.long)).sum().backward()


def test_router_layer_source_applies_no_adapter_before_layer(build: Builder) -> None:
    tasks = torch.zeros(4, dtype=torch.long)
    last = build({"type": "router", "source": "layer:1"})  # the tiny BERT has layers 0-1: no site after layer 1
    first = build({"type": "router", "source": "layer:0"})
    with torch.no_grad():
        with last.adapters_disabled():
            base = hidden(last, tasks)
        torch.testing.assert_close(hidden(last, tasks), base, rtol=0, atol=0)
        assert (hidden(first, tasks) - base).abs().max() > 1e-3


def test_router_frozen_pass_source_routes_from_a_separate_pass(build: Builder) -> None:
    model = build({"type": "router", "source": "frozen_pass"})
    with torch.no_grad():
        hidden(model, torch.zeros(4, dtype=torch.long))
    assert len(recorded(model)) == 1 and "frozen_pass" in model.ctx.representations
    with torch.no_grad(), model.use_combiner("oracle"):  # a frozen pass only while a component that reads it runs
        ids = model.backbone.tokenizer(TEXTS, padding=True, return_tensors="pt")
        model.run_backbone(ids["input_ids"], ids["attention_mask"], torch.zeros(4, dtype=torch.long))
    assert "frozen_pass" not in model.ctx.representations


def test_router_temperature_sharpens_probabilities() -> None:
    torch.manual_seed(0)
    router = make_router(gumbel=False).eval()
    rep = torch.randn(8, 8)
    router.set_temperature(1.0)
    route(router, rep)
    assert router.aux_losses == {}  # auxiliary losses only in training
    router.train()
    router.set_temperature(1.0)
    warm = route(router, rep)
    warm_entropy = float(router.aux_losses["entropy"].detach())
    router.set_temperature(0.1)
    cold = route(router, rep)
    assert cold.max(-1).values.mean() > warm.max(-1).values.mean()
    assert float(router.aux_losses["entropy"].detach()) < warm_entropy
    assert float(router.state_dict()["temperature"]) == pytest.approx(0.1)  # saved with the weights


def train_on(loss: str, router: RouterCombiner, rep: torch.Tensor, steps: int = 60) -> None:
    optimizer = torch.optim.Adam(router.parameters(), lr=0.02)
    for _ in range(steps):
        route(router, rep)
        router.aux_losses[loss].backward()
        optimizer.step()
        optimizer.zero_grad()


def probs_of(router: RouterCombiner, rep: torch.Tensor) -> torch.Tensor:
    return router.route(rep)[1].detach()


def clusters(seed: int = 0) -> torch.Tensor:
    """Two groups of 16 similar inputs (a toy stand-in for two tasks' representations)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(2, 8, generator=g) * 3
    return torch.cat([centres[0] + 0.3 * torch.randn(16, 8, generator=g), centres[1] + 0.3 * torch.randn(16, 8, generator=g)])


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp_min(1e-12).log()).sum(-1)


Measure = Callable[[torch.Tensor], float]

AUX_CASES: dict[str, tuple[Measure, str]] = {
    # name: (a measure of the routing, the direction the loss must move it)
    "load_balance": (lambda p: float(p.mean(0).max()), "down"),  # the busiest adapter's load falls
    "entropy": (lambda p: float(entropy(p).mean()), "down"),  # per-sample decisions sharpen
    "efficiency": (lambda p: float(entropy(p.mean(0))), "down"),  # the batch uses fewer adapters
    "consistency": (lambda p: float(p[:16].var(0).sum() + p[16:].var(0).sum()), "down"),  # similar inputs route alike
}


@pytest.mark.parametrize("loss", sorted(AUX_CASES))
def test_router_aux_loss_moves_routing_in_its_direction(loss: str) -> None:
    torch.manual_seed(1)
    router = make_router(gumbel=False, normalize_input=False).train()
    rep = clusters()
    if loss == "load_balance":
        with torch.no_grad():
            router.mlp[-1].bias.copy_(torch.tensor([3.0, 0.0, 0.0, 0.0]))  # adapter 0 takes most samples
    measure, _ = AUX_CASES[loss]
    before = measure(probs_of(router, rep))
    train_on(loss, router, rep)
    after = measure(probs_of(router, rep))
    assert after < 0.7 * before, (before, after)


def test_router_aux_loss_names_match_what_it_adds() -> None:
    router = make_router().train()
    route(router, torch.randn(4, 8))
    assert set(router.aux_losses) == set(router.aux_loss_names) - {"task_supervision"}  # no task ids given
    assert router.aux_loss_names == RouterCombinerConfig.aux_loss_names


def test_router_task_supervision_routes_each_cluster_to_its_task_adapter() -> None:
    torch.manual_seed(1)
    router = make_router(gumbel=False).train()
    rep = clusters()
    own = torch.tensor([2] * 16 + [0] * 16)  # cluster 0 is the task of adapter 2, cluster 1 of adapter 0
    optimizer = torch.optim.Adam(router.parameters(), lr=0.02)
    for _ in range(40):
        route(router, rep, own)
        router.aux_losses["task_supervision"].backward()
        optimizer.step()
        optimizer.zero_grad()
    assert torch.equal(probs_of(router, rep).argmax(-1), own)


def test_router_frozen_layer_source_reads_a_partial_frozen_pass_and_adapts_every_layer(build: Builder) -> None:
    from mtkit import masked_mean

    model = build({"type": "router", "source": "frozen_layer:0"})
    ids = model.backbone.tokenizer(TEXTS, padding=True, return_tensors="pt")
    tasks = torch.zeros(4, dtype=torch.long)
    with torch.no_grad():
        adapted = hidden(model, tasks)
        representation = model.ctx.representation("frozen_layer:0")
        with model.adapters_disabled():
            states = model.backbone.model(**ids, output_hidden_states=True).hidden_states
            base = hidden(model, tasks)
    assert representation is not None
    torch.testing.assert_close(representation, masked_mean(states[1], ids["attention_mask"]))  # after layer 0, no adapters
    assert (adapted - base).abs().max() > 1e-3  # the routed adapters act (from layer 0 on: the decision comes first)
