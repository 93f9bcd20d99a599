"""Shared pieces of the component tests (a module, not a conftest, so it cannot clash with other test folders)."""

from __future__ import annotations

from typing import Any

import pytest
from mtkit_backbones.config import HfEncoderBackboneConfig, ScratchTransformerBackboneConfig
from mtkit_backbones.hf_encoder import HfEncoderBackbone
from mtkit_backbones.scratch_transformer import ScratchTransformerBackbone

from tests.conftest import ROOT, TINY_BERT

FIXTURES = ROOT / "tests" / "fixtures"
TINY_SCRATCH: dict[str, Any] = {"type": "scratch_transformer", "num_layers": 2, "num_heads": 2, "hidden_size": 32, "max_positions": 128}


@pytest.fixture(scope="session")
def tiny_bert() -> HfEncoderBackbone:
    backbone = HfEncoderBackbone(HfEncoderBackboneConfig.model_validate({k: v for k, v in TINY_BERT.items() if k != "type"}))
    return backbone.eval()


@pytest.fixture(scope="session")
def tiny_scratch() -> ScratchTransformerBackbone:
    backbone = ScratchTransformerBackbone(ScratchTransformerBackboneConfig.model_validate({k: v for k, v in TINY_SCRATCH.items() if k != "type"}))
    return backbone.eval()


def tiny_recipe_for(tasks: dict[str, Any], backbone: dict[str, Any] | None = None, *, steps: int = 2, train: list[str] | None = None) -> dict[str, Any]:
    """A recipe on a tiny random backbone, no adapters, training the heads for a few steps."""
    return {
        "run": {"name": "t", "seed": 0, "batch_size": 4, "eval_batch_size": 8, "max_length": 48, "checkpoint_every": 0, "log_every": 1},
        "backbone": dict(backbone or TINY_BERT),
        "tasks": tasks,
        "phases": [{"name": "p", "steps": steps, "train": train or ["heads"], "lr": 1e-3}],
    }
