"""Ablation baselines: `uniform` and `random` routing."""

from __future__ import annotations

import torch

from .conftest import TEXTS, Builder, hidden, recorded


def test_uniform_records_equal_weights(build: Builder) -> None:
    model = build({"type": "uniform"}, adapters=4)
    with torch.no_grad():
        hidden(model, torch.zeros(4, dtype=torch.long))
    (routing,) = recorded(model)
    torch.testing.assert_close(routing, torch.full((len(TEXTS), 4), 0.25))


def test_random_routes_each_sample_to_one_adapter(build: Builder) -> None:
    model = build({"type": "random"})
    torch.manual_seed(3)
    with torch.no_grad():
        learned = hidden(model, torch.zeros(4, dtype=torch.long))
        (routing,) = recorded(model)
        assert torch.equal(routing.sum(-1), torch.ones(len(TEXTS))) and set(routing.flatten().tolist()) <= {0.0, 1.0}
        # Oracle routing with task ids = the drawn adapters (task i's adapter is column i) gives the same output.
        oracle = hidden(model, routing.argmax(-1), routing="oracle")
    torch.testing.assert_close(learned, oracle, atol=1e-5, rtol=1e-5)
