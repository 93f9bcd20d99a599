"""`per_task` and `own_adapter_init`, shared by the fusing combiners (weighted, gating, fusion_attention)."""

from __future__ import annotations

import pytest
import torch

from mtkit import MtkitError

from .conftest import Builder, hidden, recorded

FUSING = ["weighted", "gating", "fusion_attention"]


@pytest.mark.parametrize("kind", FUSING)
def test_own_adapter_init_starts_each_task_at_its_own_adapter(build: Builder, kind: str) -> None:
    model = build({"type": kind, "per_task": True, "own_adapter_init": 40.0}, adapters=3)
    tasks = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        learned = hidden(model, tasks)
        oracle = hidden(model, tasks, routing="oracle")
    torch.testing.assert_close(learned, oracle, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        hidden(model, tasks)
    (routing,) = recorded(model)
    assert routing.argmax(-1).tolist() == tasks.tolist()


@pytest.mark.parametrize("kind", FUSING)
def test_own_adapter_bias_is_learned(build: Builder, kind: str) -> None:
    model = build({"type": kind, "per_task": True, "own_adapter_init": 1.0}).train()
    hidden(model, torch.tensor([0, 1, 0, 1])).pow(2).sum().backward()
    own = {n: p for n, p in model.combiner.named_parameters() if "own" in n}
    assert own and all(p.grad is not None and p.grad.abs().sum() > 0 for p in own.values()), own


@pytest.mark.parametrize("kind", FUSING)
def test_own_adapter_init_needs_per_task(build: Builder, kind: str) -> None:
    with pytest.raises(MtkitError, match="own_adapter_init needs per_task"):
        build({"type": kind, "own_adapter_init": 5.0})
