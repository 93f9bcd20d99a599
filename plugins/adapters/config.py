"""Configs of the built-in adapters (pydantic only, so listing never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mtkit import AdapterConfig


class LoraAdapterConfig(AdapterConfig):
    """Low-rank adaptation: delta = B A x * alpha / rank, B zero-initialised."""

    rank: int = Field(default=8, gt=0, description="Rank R of the update B A.")
    alpha: float = Field(default=16.0, gt=0, description="Scale numerator: the delta is multiplied by alpha / rank.")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout on the adapter's input during training.")
    init: Literal["zeros", "random"] = Field(
        default="zeros",
        description="zeros: B starts at 0, so the adapted model equals the base; random: B starts non-zero (tests).",
    )
