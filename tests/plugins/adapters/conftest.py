"""Fixtures for the adapter tests: tiny backbones built through the registry, a model around one adapter."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
import torch

from mtkit import Adapter, Backbone, Registry, select_sites

TEXTS = ["a gripping, funny film", "shares fell sharply on monday", "dull and far too long", "the minister resigned today"]


@pytest.fixture()
def make_backbone(registry: Registry) -> Callable[[Mapping[str, Any]], Backbone]:
    def build(table: Mapping[str, Any], seed: int = 0) -> Backbone:
        params = dict(table)
        cls = registry.component_class("backbone", params.pop("type"))
        torch.manual_seed(seed)
        backbone: Backbone = cls(cls.config_class.model_validate(params))
        return backbone.requires_grad_(False).eval()

    return build


@pytest.fixture()
def make_adapter(registry: Registry) -> Callable[..., Adapter]:
    def build(name: str, backbone: Backbone, seed: int = 1, **params: Any) -> Adapter:
        cls = registry.component_class("adapter", name)
        config = cls.config_class.model_validate(params)
        torch.manual_seed(seed)
        return cls(config, sites=select_sites(config, backbone.sites()), context_size=backbone.hidden_size).eval()

    return build


def encode(backbone: Backbone, texts: list[str] = TEXTS) -> dict[str, torch.Tensor]:
    enc = backbone.tokenizer(texts, padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
