"""`fusion_attention`: attention from the site output over the adapters' deltas (AdapterFusion)."""

from __future__ import annotations

import torch

from .conftest import Builder, hidden, recorded


def test_fusion_attention_starts_as_average_of_adapters(build: Builder) -> None:
    fusion, uniform = build({"type": "fusion_attention"}, adapters=3), build({"type": "uniform"}, adapters=3)
    tasks = torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        torch.testing.assert_close(hidden(fusion, tasks), hidden(uniform, tasks), atol=1e-5, rtol=1e-5)
    (routing,) = recorded(fusion)[-1:]
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
        for (fusion,) in model.combiner.fusions.values():
            fusion.query.weight.normal_(std=0.1)
    hidden(model, torch.tensor([0, 1, 0, 1])).pow(2).sum().backward()
    for name, p in model.combiner.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_fusion_attention_temperature_sharpens_attention(build: Builder) -> None:
    model = build({"type": "fusion_attention"})
    with torch.no_grad():
        for (fusion,) in model.combiner.fusions.values():
            fusion.query.weight.normal_(std=0.5)
        peaks = []
        for temperature in (10.0, 0.05):
            model.combiner.set_temperature(temperature)
            hidden(model, torch.tensor([0, 1, 0, 1]))
            peaks.append(float(recorded(model)[0].max(-1).values.mean()))
    assert peaks[1] > peaks[0]


def test_fusion_attention_per_task_gives_each_task_its_own_fusion(build: Builder) -> None:
    shared, per_task = build({"type": "fusion_attention"}), build({"type": "fusion_attention", "per_task": True})
    tasks = torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        torch.testing.assert_close(hidden(per_task, tasks), hidden(shared, tasks), atol=1e-5, rtol=1e-5)
        for fusions in per_task.combiner.fusions.values():
            assert len(fusions) == 2
            assert fusions[1].value is not None
            fusions[1].value.weight.zero_()  # task 1's fusion now adds nothing
        changed = hidden(per_task, tasks)
        reference = hidden(shared, tasks)
    torch.testing.assert_close(changed[tasks == 0], reference[tasks == 0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(changed[tasks == 1], reference[tasks == 1], atol=1e-3)


def test_fusion_attention_value_identity_loss_measures_the_values_distance_from_identity(build: Builder) -> None:
    """AdapterFusion's regulariser: sum over fusions of ||V - I||^2, added in training only, and pulling V back to I."""
    model = build({"type": "fusion_attention"}).train()
    tasks = torch.tensor([0, 1, 0, 1])
    hidden(model, tasks)
    torch.testing.assert_close(model.aux_losses["value_identity"], torch.tensor(0.0))  # values start at the identity
    with torch.no_grad():
        shifts = []
        for (fusion,) in model.combiner.fusions.values():
            assert fusion.value is not None
            shift = torch.randn_like(fusion.value.weight) * 0.01
            fusion.value.weight.add_(shift)
            shifts.append(shift.pow(2).sum())
    hidden(model, tasks)
    loss = model.aux_losses["value_identity"]
    torch.testing.assert_close(loss, torch.stack(shifts).sum())
    loss.backward()
    for (fusion,) in model.combiner.fusions.values():
        assert fusion.value is not None and fusion.value.weight.grad is not None
        eye = torch.eye(fusion.value.weight.shape[0])
        torch.testing.assert_close(fusion.value.weight.grad, 2 * (fusion.value.weight.detach() - eye))
    with torch.no_grad():
        hidden(model.eval(), tasks)
    assert "value_identity" not in model.aux_losses
    unprojected = build({"type": "fusion_attention", "value_projection": False}).train()
    hidden(unprojected, tasks)
    assert "value_identity" not in unprojected.aux_losses
