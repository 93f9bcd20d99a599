"""`classification`: sequence classification over a pooled representation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import nn

from mtkit import TRUNCATED, Backbone, BackboneOutput, Head, HeadOutput, ModelAccess, TaskInfo

from ._labels import argmax_predictions, label_references, resolve_num_labels
from ._pooling import Pooler
from .config import ClassificationHeadConfig


class ClassificationHead(Head):
    """Sequence classification: pooled hidden states -> MLP -> class logits."""

    name = "classification"
    config_class = ClassificationHeadConfig
    config: ClassificationHeadConfig
    input_fields = ("input_ids", "attention_mask", "labels")

    def __init__(self, config: ClassificationHeadConfig, *, backbone: Backbone, task: TaskInfo) -> None:
        super().__init__(config, backbone=backbone, task=task)
        self.num_labels = resolve_num_labels(config, task)
        width = config.hidden_size or backbone.hidden_size
        self.pooler = Pooler(config.pooling, backbone.hidden_size)
        self.norm = nn.LayerNorm(backbone.hidden_size) if config.layer_norm else nn.Identity()
        layers: list[nn.Module] = []
        size = backbone.hidden_size
        for _ in range(config.hidden_layers):
            layers += [nn.Dropout(config.dropout), nn.Linear(size, width), nn.GELU()]
            size = width
        layers += [nn.Dropout(config.dropout), nn.Linear(size, self.num_labels)]
        self.mlp = nn.Sequential(*layers)

    def encode(self, examples: Mapping[str, list[Any]], tokenizer: Any, max_length: int) -> dict[str, list[Any]]:
        pair = examples[self.config.text_pair_field] if self.config.text_pair_field else None
        encoded = tokenizer(examples[self.config.text_field], pair, truncation=True, max_length=max_length)
        whole = tokenizer(examples[self.config.text_field], pair, truncation=False)["input_ids"]
        out = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], TRUNCATED: [len(ids) > max_length for ids in whole]}
        if self.config.label_field in examples:  # absent when predicting new inputs
            out["labels"] = examples[self.config.label_field]
        return out

    def forward(self, output: BackboneOutput, batch: Mapping[str, Any]) -> HeadOutput:
        pooled = self.norm(self.pooler(output.hidden, batch["attention_mask"]))
        logits = self.mlp(pooled)
        loss = F.cross_entropy(logits.float(), batch["labels"]) if "labels" in batch else None
        return HeadOutput(loss=loss, logits=logits)

    def predict(self, model: ModelAccess, batch: Mapping[str, Any]) -> list[Any]:
        return argmax_predictions(self, model, batch)

    def references(self, batch: Mapping[str, Any]) -> list[Any]:
        return label_references(batch)

    def example_from_text(self, text: str) -> dict[str, Any]:
        """The text itself, or `text | pair` for a sentence-pair task (for `mtkit predict`)."""
        if not self.config.text_pair_field:
            return {self.config.text_field: text}
        first, _, second = text.partition("|")
        return {self.config.text_field: first.strip(), self.config.text_pair_field: second.strip()}

    def validate_example(self, example: Mapping[str, Any]) -> str | None:
        for field in filter(None, (self.config.text_field, self.config.text_pair_field)):
            if field not in example:
                return f"field {field!r} is missing (fields: {', '.join(sorted(example))}); set head.text_field"
            if not isinstance(example[field], str):
                return f"field {field!r} is {example[field]!r}, not text"
        label = example.get(self.config.label_field)
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < self.num_labels:
            return f"label {label!r} in field {self.config.label_field!r} is outside the head's {self.num_labels} classes (0-{self.num_labels - 1})"
        return None
