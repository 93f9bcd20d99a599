"""`hydra_lora` against a per-token loop (outputs and gradients, dense and top-k), its shared A, and its defaults.

The runs through `mtkit run` (aux loss to the routers, export and merge refusals, kill -9 + resume) cover both
mixture families in test_mixlora.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pydantic import ValidationError

from tests.conftest import TINY_BERT
from tests.plugins.adapters.test_mixlora import SITE, compare_with_reference, reference_mixture


@pytest.mark.parametrize("top_k", [None, 2], ids=["dense", "top2"])
def test_hydra_lora_matches_per_token_reference(make_backbone: Any, make_adapter: Any, top_k: int | None) -> None:
    backbone = make_backbone(TINY_BERT)
    adapter = make_adapter("hydra_lora", backbone, rank=3, num_experts=4, top_k=top_k, init="random")
    a, b, router = adapter.matrices(SITE)
    assert tuple(a.shape) == (3, 32) and tuple(b.shape) == (4, 32, 3)  # one A shared by the four B heads
    compare_with_reference(adapter, lambda x: reference_mixture(x, router, top_k, lambda e, t: b[e] @ (a @ t) * adapter.scale))


def test_hydra_lora_costs_fewer_parameters_than_as_many_loras(make_backbone: Any, make_adapter: Any) -> None:
    backbone = make_backbone(TINY_BERT)
    hydra = make_adapter("hydra_lora", backbone, rank=4, num_experts=5)
    mixture = make_adapter("mixlora", backbone, rank=4, num_experts=5)
    sites = len(hydra.site_names)
    per_site = 4 * 32 + 5 * 32 * 4 + 5 * 32  # A, five heads, the router
    assert sum(p.numel() for p in hydra.parameters()) == sites * per_site
    assert sum(p.numel() for p in mixture.parameters()) == sites * (5 * (4 * 32 + 32 * 4) + 5 * 32)


def test_hydra_lora_defaults_are_dense_and_identity(make_backbone: Any, make_adapter: Any, registry: Any) -> None:
    backbone = make_backbone(TINY_BERT)
    adapter = make_adapter("hydra_lora", backbone)
    assert adapter.top_k is None and adapter.config.num_experts == 4
    x = torch.randn(2, 3, 32)
    assert not adapter.routed(SITE, x, None).abs().any()  # zero heads: the base model at init
    cls = registry.component_class("adapter", "hydra_lora")
    with pytest.raises(ValidationError, match="top_k 5 exceeds num_experts 4; lower top_k or raise num_experts"):
        cls.config_class.model_validate({"top_k": 5})
