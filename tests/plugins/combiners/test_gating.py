"""`gating`: a per-site gate turns each token's site input into adapter weights."""

from __future__ import annotations

import pytest
import torch

from mtkit import ForwardContext

from .conftest import TEXTS, Builder, encode, hidden, recorded


def test_gating_one_hot_gate_equals_single_adapter(build: Builder) -> None:
    model = build({"type": "gating"})
    with torch.no_grad():
        for (gate,) in model.combiner.gates.values():
            gate.bias.copy_(torch.tensor([-40.0, 40.0]))
        learned = hidden(model, torch.tensor([0, 0, 1, 0]))
        oracle = hidden(model, torch.tensor([1, 1, 1, 1]), routing="oracle")
    torch.testing.assert_close(learned, oracle, atol=1e-5, rtol=1e-5)


def test_gating_per_task_one_hot_gates_equal_oracle_routing(build: Builder) -> None:
    model = build({"type": "gating", "per_task": True})
    tasks = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        for gates in model.combiner.gates.values():
            gates[0].bias.copy_(torch.tensor([40.0, -40.0]))  # task 0 -> adapter 0
            gates[1].bias.copy_(torch.tensor([-40.0, 40.0]))  # task 1 -> adapter 1
        learned = hidden(model, tasks)
        oracle = hidden(model, tasks, routing="oracle")
    torch.testing.assert_close(learned, oracle, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_gating_weights_are_per_token_and_start_neutral(build: Builder, activation: str) -> None:
    model = build({"type": "gating", "activation": activation})
    site = next(iter(model.combiner.gates)).replace("__", ".")
    ids, mask = encode(model)
    x = torch.randn(ids.shape[0], ids.shape[1], 32)
    weights = model.combiner.gate_weights(site, x, model._sites[site], ForwardContext(attention_mask=mask, num_adapters=2))
    assert weights.shape == (len(TEXTS), ids.shape[1], 2)
    torch.testing.assert_close(weights, torch.full_like(weights, 0.5))  # zero-initialised gates


def test_gating_records_routing_once_per_forward(build: Builder) -> None:
    model = build({"type": "gating"})
    with torch.no_grad():
        hidden(model, torch.zeros(4, dtype=torch.long))
    (routing,) = recorded(model)
    torch.testing.assert_close(routing, torch.full((len(TEXTS), 2), 0.5))


def test_gating_gradients_reach_every_gate(build: Builder) -> None:
    model = build({"type": "gating", "activation": "sigmoid"}).train()
    hidden(model, torch.tensor([0, 1, 0, 1])).pow(2).sum().backward()
    for name, p in model.combiner.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
