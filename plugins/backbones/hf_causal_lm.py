"""`hf_causal_lm`: a Hugging Face causal LM (AutoModelForCausalLM), also from a GGUF file."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from mtkit import Backbone, BackboneOutput, MtkitError

from ._hub import enable_checkpointing, load_error, load_hf_model, resolve_model
from .config import HfCausalLmBackboneConfig
from .hf_encoder import find_layers


def converted_gguf(source: str, gguf_file: str, cache_dir: Path) -> Path:
    """A `save_pretrained` copy of a GGUF model, converted once (the de-quantisation takes tens of seconds)."""
    gguf_path = Path(source) / gguf_file
    stat = gguf_path.stat() if gguf_path.is_file() else None
    key = hashlib.sha256(f"{gguf_path.resolve()}:{stat.st_size if stat else ''}:{stat.st_mtime_ns if stat else ''}".encode()).hexdigest()[:12]
    target = cache_dir / f"{Path(gguf_file).stem}-{key}"
    if (target / "config.json").is_file():
        return target
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file, dtype=torch.float32)
    except ImportError as exc:
        raise MtkitError(f"{gguf_file!r}: reading GGUF needs the gguf package; pip install gguf ({exc})", key="gguf_file") from None
    # Loading de-quantises the GGUF tensors to fp32; only the quantizer marker remains, and it
    # blocks save_pretrained. Dropping it saves the plain fp32 model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = cache_dir / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)  # atomic: a crash mid-conversion leaves no half-written cache
    return target


class HfCausalLmBackbone(Backbone):
    """A Hugging Face causal LM (AutoModelForCausalLM) by hub id, path, GGUF file or packaged alias."""

    name = "hf_causal_lm"
    config_class = HfCausalLmBackboneConfig
    generative = True

    def __init__(self, config: HfCausalLmBackboneConfig) -> None:
        super().__init__()
        self.config = config
        source, gguf_file = resolve_model(config.model), config.gguf_file
        if gguf_file is None and config.model.lower() in GGUF_ALIASES:
            gguf_file = GGUF_ALIASES[config.model.lower()]
        if gguf_file is not None:
            try:
                source = str(converted_gguf(source, gguf_file, Path(config.cache_dir).expanduser()))
            except (OSError, ValueError) as exc:
                raise load_error(config.model, exc) from None
        self.tokenizer, self.model = load_hf_model(AutoModelForCausalLM, source, config)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._layers = find_layers(self.model, self.model.config.num_hidden_layers)
        if config.gradient_checkpointing:
            enable_checkpointing(self.model)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def layers(self) -> Sequence[nn.Module]:
        return self._layers

    @property
    def activation_checkpointing(self) -> bool:
        return self.config.gradient_checkpointing

    def hf_model_path(self) -> str:
        """The wrapped transformers model sits at attribute `model` (HfModelBackbone: PEFT export and import)."""
        return "model"

    def embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> BackboneOutput:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False)
        return BackboneOutput(hidden=out.hidden_states[-1], logits=out.logits)

    def generate(self, input_ids: Tensor, attention_mask: Tensor, **kwargs: Any) -> Tensor:
        """New tokens only (the prompt is cut off); prompts must be left-padded."""
        kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return out[:, input_ids.shape[1] :]


GGUF_ALIASES = {"smollm2-135m-instruct": "SmolLM2-135M-Instruct.Q4_1.gguf"}
