"""`hf_encoder`: any Hugging Face AutoModel encoder (BERT, RoBERTa, MiniLM, ...)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from transformers import AutoModel, AutoTokenizer

from mtkit import Backbone, BackboneOutput

from ._hub import enable_checkpointing, load_error, overrides_error, quantization_options, random_init_config, resolve_model
from .config import HfEncoderBackboneConfig


def find_layers(model: nn.Module, count: int) -> nn.ModuleList:
    """The ModuleList of transformer blocks: the first one holding `count` modules."""
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise ValueError(f"{type(model).__name__}: no list of {count} layers found")


class HfEncoderBackbone(Backbone):
    """A Hugging Face encoder (AutoModel) by hub id, local path or packaged alias."""

    name = "hf_encoder"
    config_class = HfEncoderBackboneConfig

    def __init__(self, config: HfEncoderBackboneConfig) -> None:
        super().__init__()
        self.config = config
        source = resolve_model(config.model)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, revision=config.revision)
            if config.random_init:
                model_config = random_init_config(source, config.revision, config.config_overrides)
                self.model = AutoModel.from_config(model_config)
            else:
                # float32 whatever the checkpoint stores (config_overrides may set dtype): transformers v5 would keep a
                # float16/bfloat16 checkpoint's dtype, and adapters would train in half precision.
                self.model = AutoModel.from_pretrained(source, revision=config.revision, **{"dtype": torch.float32, **quantization_options(config.quantization), **config.config_overrides})
        except (OSError, ValueError) as exc:
            raise load_error(config.model, exc) from None
        except (TypeError, AttributeError, RuntimeError) as exc:
            if not config.config_overrides:
                raise
            raise overrides_error(exc) from None
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
        return getattr(self.model, "embeddings", None) or self.model.get_input_embeddings()

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> BackboneOutput:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return BackboneOutput(hidden=out.last_hidden_state)
