"""`multiple_choice`: score each (question, choice) pair and pick the best choice.

Collate flattens a batch of B examples with C choices into B*C rows, so the multi-task model
runs them through the backbone like any other rows; the head scores each row and reshapes the
scores back to (B, C). Examples with fewer choices than the batch's widest are padded with
masked dummy rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtkit import Backbone, BackboneOutput, Head, HeadOutput, ModelAccess, MtkitError, TaskInfo, pad_batch

from ._labels import argmax_predictions, label_references
from ._pooling import Pooler
from .config import MultipleChoiceHeadConfig


class MultipleChoiceHead(Head):
    """Multiple choice: each (question, choice) pair is encoded as one row, scored, and the best choice wins."""

    name = "multiple_choice"
    config_class = MultipleChoiceHeadConfig
    config: MultipleChoiceHeadConfig

    def __init__(self, config: MultipleChoiceHeadConfig, *, backbone: Backbone, task: TaskInfo) -> None:
        super().__init__(config, backbone=backbone, task=task)
        self.pooler = Pooler(config.pooling, backbone.hidden_size)
        self.norm = nn.LayerNorm(backbone.hidden_size) if config.layer_norm else nn.Identity()
        self.dropout = nn.Dropout(config.dropout)
        self.score = nn.Linear(backbone.hidden_size, 1)

    def encode(self, examples: Mapping[str, list[Any]], tokenizer: Any, max_length: int) -> dict[str, list[Any]]:
        ids, masks = [], []
        for question, choices in zip(examples[self.config.question_field], examples[self.config.choices_field], strict=True):
            encoded = tokenizer([question] * len(choices), list(choices), truncation=True, max_length=max_length)
            ids.append(encoded["input_ids"])
            masks.append(encoded["attention_mask"])
        out: dict[str, list[Any]] = {"choice_input_ids": ids, "choice_attention_mask": masks}
        if self.config.label_field in examples:  # absent when predicting new inputs
            out["labels"] = examples[self.config.label_field]
        return out

    def collate(self, features: Mapping[str, list[Any]], tokenizer: Any) -> dict[str, Any]:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        width = max(len(choices) for choices in features["choice_input_ids"])
        rows: list[list[int]] = []
        masks: list[list[int]] = []
        choice_mask = []
        for ids, mask in zip(features["choice_input_ids"], features["choice_attention_mask"], strict=True):
            missing = width - len(ids)
            rows += list(ids) + [ids[0]] * missing  # dummy rows, masked out of the scores below
            masks += list(mask) + [mask[0]] * missing
            choice_mask.append([1] * len(ids) + [0] * missing)
        batch = pad_batch({"input_ids": rows, "attention_mask": masks}, pad_id)  # (B*C, T)
        batch["choice_mask"] = torch.tensor(choice_mask, dtype=torch.bool)  # (B, C)
        if "labels" in features:
            batch["labels"] = torch.tensor(features["labels"], dtype=torch.long)
        return batch

    def forward(self, output: BackboneOutput, batch: Mapping[str, Any]) -> HeadOutput:
        choice_mask = batch["choice_mask"]
        pooled = self.norm(self.pooler(output.hidden, batch["attention_mask"]))  # (B*C, D)
        scores = self.score(self.dropout(pooled)).view(choice_mask.shape)  # (B, C)
        logits = scores.float().masked_fill(~choice_mask, torch.finfo(torch.float32).min)
        loss = F.cross_entropy(logits, batch["labels"]) if "labels" in batch else None
        return HeadOutput(loss=loss, logits=logits)

    def predict(self, model: ModelAccess, batch: Mapping[str, Any]) -> list[Any]:
        return argmax_predictions(self, model, batch)

    def references(self, batch: Mapping[str, Any]) -> list[Any]:
        return label_references(batch)

    def example_from_text(self, text: str) -> dict[str, Any]:
        """`question | choice 1 | choice 2 | ...` (for `mtkit predict`)."""
        question, *choices = [part.strip() for part in text.split("|")]
        if len(choices) < 2:
            raise MtkitError(f"multiple-choice input {text!r} needs at least two choices: 'question | choice 1 | choice 2'")
        return {self.config.question_field: question, self.config.choices_field: choices}

    def validate_example(self, example: Mapping[str, Any]) -> str | None:
        question, choices = self.config.question_field, self.config.choices_field
        for field in (question, choices, self.config.label_field):
            if field not in example:
                return f"field {field!r} is missing (fields: {', '.join(sorted(example))}); set head.{_setting(self.config, field)} or rename the column"
        if not isinstance(example[question], str):
            return f"field {question!r} is {example[question]!r}, not text"
        found = example[choices]
        if not isinstance(found, list) or len(found) < 2 or not all(isinstance(c, str) for c in found):
            return f"field {choices!r} is {found!r}, not a list of at least 2 answer texts"
        if self.config.num_choices is not None and len(found) != self.config.num_choices:
            return f"field {choices!r} has {len(found)} choices but head.num_choices is {self.config.num_choices}"
        label = example[self.config.label_field]
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(found):
            return f"label {label!r} in field {self.config.label_field!r} is not a choice index (0-{len(found) - 1})"
        return None


def _setting(config: MultipleChoiceHeadConfig, field: str) -> str:
    return next(name for name in ("question_field", "choices_field", "label_field") if getattr(config, name) == field)
