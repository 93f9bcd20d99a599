"""Configs of the built-in heads (pydantic only, so listing never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mtkit import ComponentConfig


class ClassificationHeadConfig(ComponentConfig):
    """Sequence classification: pooled hidden states -> MLP -> class logits."""

    num_labels: int | None = Field(default=None, gt=1, description="Number of classes; default: the dataset's label names.")
    pooling: Literal["cls", "mean", "attention"] = Field(
        default="mean", description="cls: first token; mean: masked mean; attention: learned attention over tokens."
    )
    hidden_layers: int = Field(default=0, ge=0, le=4, description="Hidden layers of the MLP before the output layer.")
    hidden_size: int | None = Field(default=None, gt=0, description="Width of the MLP's hidden layers (default: backbone width).")
    dropout: float = Field(default=0.1, ge=0, lt=1, description="Dropout before each linear layer.")
    layer_norm: bool = Field(default=False, description="Apply a task-specific LayerNorm to the pooled vector.")
    text_field: str = Field(default="text", min_length=1, description="Example field holding the input text.")
    text_pair_field: str | None = Field(default=None, description="Optional second text field (sentence pairs).")
    label_field: str = Field(default="label", min_length=1, description="Example field holding the integer label.")
