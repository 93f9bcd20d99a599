"""`weighted`: softmax of learned logits over adapters, shared or per task."""

from __future__ import annotations

import torch

from .conftest import TEXTS, Builder, hidden, recorded


def test_weighted_one_hot_equals_single_adapter(build: Builder) -> None:
    model = build({"type": "weighted"})
    with torch.no_grad():
        model.combiner.logits.copy_(torch.tensor([[-1e9, 0.0]]))  # all weight on column 1 ("topic")
        learned = hidden(model, torch.tensor([0, 0, 1, 1]))
        oracle = hidden(model, torch.tensor([1, 1, 1, 1]), routing="oracle")
    torch.testing.assert_close(learned, oracle, atol=1e-5, rtol=1e-5)


def test_weighted_per_task_one_hot_equals_oracle_on_mixed_batch(build: Builder) -> None:
    model = build({"type": "weighted", "per_task": True})
    tasks = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        model.combiner.logits.copy_(torch.tensor([[0.0, -1e9], [-1e9, 0.0]]))
        learned = hidden(model, tasks)
        oracle = hidden(model, tasks, routing="oracle")
    torch.testing.assert_close(learned, oracle, atol=1e-5, rtol=1e-5)


def test_weighted_starts_as_average_and_records_routing(build: Builder) -> None:
    model = build({"type": "weighted"})
    with torch.no_grad():
        hidden(model, torch.tensor([0, 1, 0, 1]))
    assert len(recorded(model)) == 1  # once per forward, not once per site
    torch.testing.assert_close(recorded(model)[0], torch.full((len(TEXTS), 2), 0.5))


def test_weighted_gradients_reach_logits(build: Builder) -> None:
    model = build({"type": "weighted", "per_task": True}).train()
    hidden(model, torch.tensor([0, 1, 0, 1])).pow(2).sum().backward()
    grad = model.combiner.logits.grad
    assert grad is not None and grad.abs().sum() > 0
