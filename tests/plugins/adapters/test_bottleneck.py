"""`bottleneck`: hand-written maths, placement on BERT-like and Llama-like sites, batched mixing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from mtkit_adapters.config import BottleneckAdapterConfig
from pydantic import ValidationError

from mtkit import ForwardContext
from tests.conftest import TINY_BERT, TINY_LLAMA


def test_bottleneck_delta_matches_hand_written_formula(make_backbone: Callable[..., Any], make_adapter: Callable[..., Any]) -> None:
    backbone = make_backbone(TINY_BERT)
    adapter = make_adapter("bottleneck", backbone, bottleneck_dim=5, non_linearity="gelu", init="random")
    site = adapter.site_names[0]
    down, up = adapter.layers_at(site)
    with torch.no_grad():
        up.bias.normal_()
        y = torch.randn(2, 3, 32)
        expected = F.gelu(y @ down.weight.T + down.bias) @ up.weight.T + up.bias
        torch.testing.assert_close(adapter.delta(site, y, y, ForwardContext()), expected, atol=1e-6, rtol=1e-5)
        w = torch.tensor([[0.5], [3.0]])
        torch.testing.assert_close(type(adapter).mix([adapter], site, y, y, w, ForwardContext()), expected * w[:, :, None], atol=1e-6, rtol=1e-5)
    assert down.out_features == 5


@pytest.mark.parametrize(
    ("table", "placement", "expected"),
    [
        (TINY_BERT, "pfeiffer", ["model.encoder.layer.{i}.output.dense"]),
        (TINY_BERT, "houlsby", ["model.encoder.layer.{i}.attention.output.dense", "model.encoder.layer.{i}.output.dense"]),
        (TINY_LLAMA, "pfeiffer", ["model.model.layers.{i}.mlp.down_proj"]),
        (TINY_LLAMA, "houlsby", ["model.model.layers.{i}.mlp.down_proj", "model.model.layers.{i}.self_attn.o_proj"]),
    ],
    ids=["bert-pfeiffer", "bert-houlsby", "llama-pfeiffer", "llama-houlsby"],
)
def test_bottleneck_placement_resolves_sites(
    table: dict[str, Any], placement: str, expected: list[str], make_backbone: Callable[..., Any], make_adapter: Callable[..., Any]
) -> None:
    adapter = make_adapter("bottleneck", make_backbone(table), placement=placement)
    assert adapter.site_names == sorted(p.format(i=i) for i in range(2) for p in expected)


def test_bottleneck_size_from_reduction_factor(make_backbone: Callable[..., Any], make_adapter: Callable[..., Any]) -> None:
    adapter = make_adapter("bottleneck", make_backbone(TINY_BERT), reduction_factor=4)
    assert {adapter.layers_at(s)[0].out_features for s in adapter.site_names} == {32 // 4}


def test_bottleneck_config_rejects_sites_with_named_placement() -> None:
    with pytest.raises(ValidationError, match="use placement = 'custom'"):
        BottleneckAdapterConfig.model_validate({"placement": "pfeiffer", "target_modules": ["query"]})
    with pytest.raises(ValidationError, match="needs target_modules"):
        BottleneckAdapterConfig.model_validate({"placement": "custom"})
    assert BottleneckAdapterConfig.model_validate({"placement": "custom", "target_modules": ["query"]}).target_modules == ["query"]


def test_bottleneck_mix_of_different_activations_is_still_exact(make_backbone: Callable[..., Any], make_adapter: Callable[..., Any]) -> None:
    backbone = make_backbone(TINY_BERT)
    a = make_adapter("bottleneck", backbone, seed=1, non_linearity="relu", init="random", bottleneck_dim=4)
    b = make_adapter("bottleneck", backbone, seed=2, non_linearity="tanh", init="random", bottleneck_dim=6)
    site = a.site_names[0]
    y = torch.randn(2, 3, 32)
    w = torch.rand(2, 3, 2)
    ctx = ForwardContext()
    with torch.no_grad():
        expected = w[..., :1] * a.delta(site, y, y, ctx) + w[..., 1:] * b.delta(site, y, y, ctx)
        torch.testing.assert_close(type(a).mix([a, b], site, y, y, w, ctx), expected, atol=1e-6, rtol=1e-5)
