"""`classification`: sequence classification over a pooled representation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkit import (
    TRUNCATED,
    Backbone,
    BackboneOutput,
    Head,
    HeadOutput,
    HfModelBackbone,
    ModelAccess,
    MtkitError,
    TaskInfo,
    peft_format,
)

from ._labels import argmax_predictions, label_references, resolve_num_labels
from ._peft import linear_tensors, load_linear, load_tensor
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
        self.pooler = Pooler(config.pooling, backbone.hidden_size, _model_pooler(backbone) if config.pooling == "pooler" else None)
        self.norm = nn.LayerNorm(backbone.hidden_size) if config.layer_norm else nn.Identity()
        layers: list[nn.Module] = []
        size = backbone.hidden_size
        for _ in range(config.hidden_layers):
            layers += [nn.Dropout(config.dropout), nn.Linear(size, width), nn.GELU()]
            size = width
        layers += [nn.Dropout(config.dropout), nn.Linear(size, self.num_labels)]
        self.mlp = nn.Sequential(*layers)

    def peft_head(self, prefix: str) -> peft_format.PeftHeadWeights:
        """transformers' BERT-like sequence classification head: the model's pooler, then `classifier`."""
        plain = self.config.pooling == "pooler" and self.config.hidden_layers == 0 and not self.config.layer_norm
        if not plain:
            raise MtkitError(
                f"head pooling {self.config.pooling!r} with {self.config.hidden_layers} hidden layer(s) and layer_norm = "
                f"{str(self.config.layer_norm).lower()} has no transformers counterpart; set pooling = 'pooler', "
                "hidden_layers = 0 and layer_norm = false for a head that PEFT and transformers load"
            )
        tensors = linear_tensors(self.mlp[-1], "classifier") | linear_tensors(self.pooler.dense, f"{prefix}pooler.dense")
        return peft_format.PeftHeadWeights("SEQ_CLS", tensors, ["classifier", "pooler"])

    @torch.no_grad()
    def load_peft_head(self, tensors: Mapping[str, Tensor], prefix: str) -> None:
        """A BERT-like `classifier` (over the model's pooler; a saved `pooler` too) loads; other heads are refused."""
        names = {"classifier.weight", "classifier.bias", f"{prefix}pooler.dense.weight", f"{prefix}pooler.dense.bias"}
        other = sorted(set(tensors) - names)
        if other:
            raise MtkitError(
                f"tensor {other[0]!r} from modules_to_save is not a BERT-like classifier (a Linear over the model's "
                "pooler), which is the only sequence classification head mtkit's classification head can hold; "
                "train the adapter on such a model, or re-save it without modules_to_save and train the head in mtkit"
            )
        if "classifier.weight" not in tensors:
            raise MtkitError(f"modules_to_save holds {sorted(tensors)} but no 'classifier.weight'; re-save it with the classifier")
        if self.config.pooling != "pooler" or self.config.hidden_layers or self.config.layer_norm:
            raise MtkitError(
                "its 'classifier.weight' reads the model's pooler output, so the task's head must be "
                "type = 'classification' with pooling = 'pooler', hidden_layers = 0 and layer_norm = false; set those"
            )
        weight = tensors["classifier.weight"]
        if weight.shape[0] != self.num_labels:
            raise MtkitError(
                f"'classifier.weight' has {weight.shape[0]} labels but the task has {self.num_labels} "
                f"({', '.join(self.task.label_names) or 'no names'}); import the adapter for a task with its labels"
            )
        load_linear(self.mlp[-1], {k: v for k, v in tensors.items() if k.startswith("classifier.")}, "classifier", "")
        for part in ("weight", "bias"):
            if f"{prefix}pooler.dense.{part}" in tensors:
                load_tensor(getattr(self.pooler.dense, part), tensors[f"{prefix}pooler.dense.{part}"], f"{prefix}pooler.dense.{part}")

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


def _model_pooler(backbone: Backbone) -> nn.Module:
    """The dense layer of the backbone model's own pooler (BERT-like encoders have one)."""
    model = backbone.get_submodule(backbone.hf_model_path()) if isinstance(backbone, HfModelBackbone) else None
    dense = getattr(getattr(model, "pooler", None), "dense", None)
    if not isinstance(dense, nn.Linear):
        raise MtkitError(
            f"pooling 'pooler' needs a backbone whose model has a pooler (BERT-like encoders), but backbone "
            f"{backbone.name!r} has none; use pooling = 'cls' or 'mean'",
            key="pooling",
        )
    return dense
