"""The classification head's options: pooling modes, MLP depth and width, dropout, per-task layer norm."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from mtkit_heads.classification import ClassificationHead
from mtkit_heads.config import ClassificationHeadConfig
from torch import nn

from mtkit import BackboneOutput, TaskInfo
from tests.plugins.components_support import tiny_bert  # noqa: F401  (fixture)


def _head(backbone: Any, **config: Any) -> ClassificationHead:
    torch.manual_seed(0)
    return ClassificationHead(ClassificationHeadConfig(**config), backbone=backbone, task=TaskInfo("t", 0, ("a", "b", "c"))).eval()


def _batch() -> tuple[BackboneOutput, dict[str, torch.Tensor]]:
    hidden = torch.randn(2, 4, 32)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    return BackboneOutput(hidden=hidden), {"attention_mask": mask, "labels": torch.tensor([0, 2])}


@pytest.mark.parametrize("pooling", ["cls", "mean", "attention"])
def test_classification_pooling_ignores_padded_tokens(tiny_bert: Any, pooling: str) -> None:
    head = _head(tiny_bert, pooling=pooling)
    output, batch = _batch()
    changed = output.hidden.clone()
    changed[0, 2:] = 100.0  # padding positions of the first row
    with torch.no_grad():
        a = head(output, batch).logits
        b = head(BackboneOutput(hidden=changed), batch).logits
    torch.testing.assert_close(a, b)
    assert a.shape == (2, 3)


def test_classification_pooling_modes_compute_what_they_say(tiny_bert: Any) -> None:
    output, batch = _batch()
    with torch.no_grad():
        cls = _head(tiny_bert, pooling="cls").pooler(output.hidden, batch["attention_mask"])
        mean = _head(tiny_bert, pooling="mean").pooler(output.hidden, batch["attention_mask"])
        attention = _head(tiny_bert, pooling="attention")
        nn.init.zeros_(attention.pooler.query.weight)  # equal scores: attention pooling becomes the masked mean
        attn = attention.pooler(output.hidden, batch["attention_mask"])
    torch.testing.assert_close(cls, output.hidden[:, 0])
    torch.testing.assert_close(mean[0], output.hidden[0, :2].mean(0))
    torch.testing.assert_close(attn, mean)


def test_classification_mlp_depth_width_dropout_and_layer_norm(tiny_bert: Any) -> None:
    head = _head(tiny_bert, hidden_layers=2, hidden_size=16, dropout=0.3, layer_norm=True)
    linears = [m for m in head.mlp if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(32, 16), (16, 16), (16, 3)]
    assert all(m.p == 0.3 for m in head.mlp if isinstance(m, nn.Dropout))
    assert isinstance(head.norm, nn.LayerNorm)
    assert isinstance(_head(tiny_bert).norm, nn.Identity) and len([m for m in _head(tiny_bert).mlp if isinstance(m, nn.Linear)]) == 1
    output, batch = _batch()
    head.train()
    torch.manual_seed(1)
    first = head(output, batch).logits
    torch.manual_seed(2)
    assert not torch.equal(first, head(output, batch).logits)  # dropout is active in training
    head.eval()
    assert torch.equal(head(output, batch).logits, head(output, batch).logits)
