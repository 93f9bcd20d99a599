"""`phatgoose`: top-k routing per token by the cosine of token and gate against a hand-written reference (outputs and
gradients), the gate-training pass against its reference, and the gate training itself."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from mtkit import FitData, MtkitError, site_key

from .conftest import Builder, encode, reference_hidden, texts_unread

TASKS = torch.zeros(4, dtype=torch.long)


def _frozen_modes(model: Any) -> Any:
    model.eval()
    return model


def _by_hand(combiner: Any, top_k: int, temperature: float) -> Any:
    def weights(site: str, x: torch.Tensor) -> torch.Tensor:
        gates = combiner.gates[site_key(site)]
        cosines = torch.einsum("btd,kd->btk", x, gates) / (x.norm(dim=-1, keepdim=True) * gates.norm(dim=-1))
        kept = cosines.argsort(dim=-1, descending=True)[..., :top_k]
        keep = torch.zeros_like(cosines, dtype=torch.bool).scatter(-1, kept, True)
        return torch.where(keep, cosines / temperature, float("-inf")).softmax(-1)

    return weights


def _grads(model: Any, out: torch.Tensor) -> dict[str, torch.Tensor]:
    model.combiner.zero_grad()
    out.pow(2).sum().backward()
    return {k: p.grad.clone() for k, p in model.combiner.gates.items()}


def test_phatgoose_routing_outputs_and_gradients_match_a_hand_written_reference(build: Builder) -> None:
    model = _frozen_modes(build({"type": "phatgoose", "top_k": 2, "temperature": 0.5}, adapters=4))
    ids, mask = encode(model)
    with model.use_combiner("combiner"):
        ours = model.run_backbone(ids, mask, TASKS).hidden
    ours_grads = _grads(model, ours)
    theirs = reference_hidden(model, ids, mask, _by_hand(model.combiner, 2, 0.5))
    theirs_grads = _grads(model, theirs)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    for key, grad in ours_grads.items():
        assert grad.abs().max() > 0
        torch.testing.assert_close(grad, theirs_grads[key], atol=1e-5, rtol=1e-4)


def test_phatgoose_gate_training_pass_scales_the_one_adapter_by_a_sigmoid_gate(build: Builder) -> None:
    model = _frozen_modes(build({"type": "phatgoose"}, adapters=3))
    combiner = model.combiner
    ids, mask = encode(model)
    combiner._training_column = 1
    with model.use_combiner("combiner"):
        ours = model.run_backbone(ids, mask, TASKS).hidden
    ours_grads = _grads(model, ours)
    combiner._training_column = None

    def weights(site: str, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(x @ combiner.gates[site_key(site)][1])
        return torch.stack([torch.zeros_like(gate), gate, torch.zeros_like(gate)], dim=-1)

    theirs = reference_hidden(model, ids, mask, weights)
    theirs_grads = _grads(model, theirs)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    for key, grad in ours_grads.items():
        assert grad[[0, 2]].abs().max() == 0 and grad[1].abs().max() > 0  # only the training adapter's gate learns
        torch.testing.assert_close(grad, theirs_grads[key], atol=1e-5, rtol=1e-4)


def test_phatgoose_fit_trains_each_adapters_gates_on_its_own_task(build: Builder) -> None:
    model = _frozen_modes(build({"type": "phatgoose", "gate_steps": 15, "gate_lr": 0.05}, adapters=3))
    combiner = model.combiner
    ids, mask = encode(model)
    seen: list[int | None] = []
    target = torch.randn(4, ids.shape[1], 32, generator=torch.Generator().manual_seed(0))

    def loss(pieces: Any) -> torch.Tensor:
        seen.append(combiner._training_column)
        with model.use_combiner("combiner"):
            return (model.run_backbone(ids, mask, TASKS).hidden - target).pow(2).mean()

    before = {k: p.detach().clone() for k, p in combiner.gates.items()}
    data = FitData(
        phase="gates", tasks=("a", "b"), adapter_tasks={"sentiment": ("a",), "topic": ("b",), "extra0": ()}, seed=0,
        device=torch.device("cpu"), batch_size=4, batches=lambda task, limit: [(task, {})], loss=loss,
        forward_texts=texts_unread,
    )
    summary = combiner.fit(data)
    assert seen == [0] * 15 + [1] * 15  # each adapter with a task trains alone, in turn
    for key, gates in combiner.gates.items():
        assert not gates.requires_grad and gates.grad is None
        assert torch.equal(gates[2], before[key][2])  # an adapter without a task keeps its gates
        assert not torch.equal(gates[0], before[key][0]) and not torch.equal(gates[1], before[key][1])
    first, last = (float(v) for v in summary["gate_loss"]["sentiment"].split(" -> "))
    assert last < first


def test_phatgoose_needs_an_adapter_with_task_data(build: Builder) -> None:
    model = build({"type": "phatgoose"}, adapters=2)
    data = FitData(
        phase="gates", tasks=(), adapter_tasks={}, seed=0, device=torch.device("cpu"), batch_size=4,
        batches=lambda task, limit: [], loss=lambda pieces: torch.zeros(()),
        forward_texts=texts_unread,
    )
    with pytest.raises(MtkitError, match="no adapter serves a task with training examples"):
        model.combiner.fit(data)
