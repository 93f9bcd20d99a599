"""`hf_encoder`: any Hugging Face AutoModel encoder (BERT, RoBERTa, MiniLM, ...)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from transformers import AutoModel

from mtkit import Backbone, BackboneOutput

from ._hub import enable_checkpointing, load_hf_model, resolve_model
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
        self.tokenizer, self.model = load_hf_model(AutoModel, resolve_model(config.model), config)
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
