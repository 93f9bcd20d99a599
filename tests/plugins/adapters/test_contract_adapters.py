"""Every built-in adapter passes the shared contract (mtkit.testing.adapter) on a tiny encoder and causal LM."""

from __future__ import annotations

from typing import Any

import pytest

from mtkit import Registry
from mtkit.testing.adapter import ADAPTER_CHECKS, AdapterHarness
from tests.conftest import TINY_BERT, TINY_LLAMA

ADAPTERS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (identity params, non-identity overrides)
    "lora": ({"rank": 4, "target_modules": ["re:(query|value|q_proj|v_proj)$"]}, {"init": "random"}),
    "bottleneck": ({"placement": "houlsby", "bottleneck_dim": 8}, {"init": "random"}),
    "hyper_lora": ({"rank": 2, "hidden_dim": 16, "embedding_dim": 8, "target_modules": ["re:(query|value|q_proj|v_proj)$"]}, {"init": "random"}),
    "mixlora": ({"rank": 2, "num_experts": 4, "top_k": 2, "target_modules": ["re:(query|value|q_proj|v_proj)$"]}, {"init": "random"}),
    "hydra_lora": ({"rank": 2, "num_experts": 3, "target_modules": ["re:(query|value|q_proj|v_proj)$"]}, {"init": "random"}),
}
BACKBONES = {"tiny_bert": TINY_BERT, "tiny_llama": TINY_LLAMA}
_HARNESSES: dict[tuple[str, str], AdapterHarness] = {}


def harness(adapter: str, backbone: str, registry: Registry) -> AdapterHarness:
    key = (adapter, backbone)
    if key not in _HARNESSES:  # one backbone build per pair, shared by its checks
        params, nonidentity = ADAPTERS[adapter]
        _HARNESSES[key] = AdapterHarness(adapter, params, backbone=BACKBONES[backbone], nonidentity=nonidentity, registry=registry)
    return _HARNESSES[key]


@pytest.mark.parametrize("check", list(ADAPTER_CHECKS))
@pytest.mark.parametrize("backbone", list(BACKBONES))
@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_contract_adapter_passes(adapter: str, backbone: str, check: str, registry: Registry) -> None:
    ADAPTER_CHECKS[check](harness(adapter, backbone, registry))
