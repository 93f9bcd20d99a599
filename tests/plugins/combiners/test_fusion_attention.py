"""`fusion_attention`: attention from the site output over the adapters' deltas (AdapterFusion)."""

from __future__ import annotations

import torch

from .conftest import Builder, hidden


def test_fusion_attention_starts_as_average_of_adapters(build: Builder) -> None:
    fusion, uniform = build({"type": "fusion_attention"}, adapters=3), build({"type": "uniform"}, adapters=3)
    tasks = torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        torch.testing.assert_close(hidden(fusion, tasks), hidden(uniform, tasks), atol=1e-5, rtol=1e-5)
    (routing,) = fusion.ctx.routing_log[-1:]
    torch.testing.assert_close(routing, torch.full((4, 3), 1 / 3))


def test_fusion_attention_works_over_the_generic_stack(build: Builder) -> None:
    # Mixed ranks take the generic Adapter.stack path (one delta per adapter): fusion needs nothing
    # family-specific, and its fresh start is still the average of the deltas.
    fusion = build({"type": "fusion_attention", "projection_dim": 8}, adapters=3, ranks=[2, 4, 8])
    uniform = build({"type": "uniform"}, adapters=3, ranks=[2, 4, 8])
    tasks = torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        torch.testing.assert_close(hidden(fusion, tasks), hidden(uniform, tasks), atol=1e-5, rtol=1e-5)


def test_fusion_attention_gradients_reach_query_key_and_value(build: Builder) -> None:
    model = build({"type": "fusion_attention"}).train()
    with torch.no_grad():  # leave the neutral start so that the key projection gets a gradient too
        for fusion in model.combiner.fusions.values():
            fusion.query.weight.normal_(std=0.1)
    hidden(model, torch.tensor([0, 1, 0, 1])).pow(2).sum().backward()
    for name, p in model.combiner.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_fusion_attention_temperature_sharpens_attention(build: Builder) -> None:
    model = build({"type": "fusion_attention"})
    with torch.no_grad():
        for fusion in model.combiner.fusions.values():
            fusion.query.weight.normal_(std=0.5)
        peaks = []
        for temperature in (10.0, 0.05):
            model.combiner.set_temperature(temperature)
            model.ctx.routing_log = []
            hidden(model, torch.tensor([0, 1, 0, 1]))
            peaks.append(float(model.ctx.routing_log[0].max(-1).values.mean()))
    assert peaks[1] > peaks[0]
