"""`token_classification`: one label per word (tagging, NER), predicted at each word's first sub-token.

Words are tokenized with `is_split_into_words`; a word's label goes to its first sub-token and
every other token (later sub-tokens, special tokens, padding) gets -100, which the loss ignores.
Predictions and references are label-name sequences, one per word (metrics: `token_accuracy`
over words, `entity_f1` over BIO spans).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from mtkit import Backbone, BackboneOutput, Head, HeadOutput, ModelAccess, MtkitError, TaskInfo, peft_format

from ._labels import resolve_num_labels
from ._peft import linear_tensors, load_linear
from .config import TokenClassificationHeadConfig

IGNORED = -100


class TokenClassificationHead(Head):
    """Token classification (tagging): one label per word, predicted at the word's first sub-token."""

    name = "token_classification"
    config_class = TokenClassificationHeadConfig
    config: TokenClassificationHeadConfig
    input_fields = ("input_ids", "attention_mask", "labels")

    def __init__(self, config: TokenClassificationHeadConfig, *, backbone: Backbone, task: TaskInfo) -> None:
        super().__init__(config, backbone=backbone, task=task)
        self.num_labels = resolve_num_labels(config, task)
        self.label_names = list(task.label_names) if task.label_names else [str(i) for i in range(self.num_labels)]
        self.norm = nn.LayerNorm(backbone.hidden_size) if config.layer_norm else nn.Identity()
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(backbone.hidden_size, self.num_labels)

    def peft_head(self, prefix: str) -> peft_format.PeftHeadWeights:
        """transformers' token classification head: `classifier` over each token's hidden state."""
        if self.config.layer_norm:
            raise MtkitError("head layer_norm = true has no transformers counterpart; set layer_norm = false for a head that PEFT and transformers load")
        return peft_format.PeftHeadWeights("TOKEN_CLS", linear_tensors(self.classifier, "classifier"), ["classifier"])

    def load_peft_head(self, tensors: Mapping[str, Tensor], prefix: str) -> None:
        fix = "train the adapter on a BERT-like token classification model, or re-save it without modules_to_save"
        if self.config.layer_norm:
            raise MtkitError("its 'classifier' reads the hidden states directly, so the task's head must have layer_norm = false; set it")
        weight = tensors.get("classifier.weight")
        if weight is not None and weight.shape[0] != self.num_labels:
            raise MtkitError(f"'classifier.weight' has {weight.shape[0]} tags but the task has {self.num_labels}; import the adapter for a task with its tags")
        load_linear(self.classifier, tensors, "classifier", fix)

    def encode(self, examples: Mapping[str, list[Any]], tokenizer: Any, max_length: int) -> dict[str, list[Any]]:
        words = examples[self.config.tokens_field]
        encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
        tags = examples.get(self.config.tags_field)
        labels = []
        for i in range(len(words)):
            previous = None
            row = []
            for word in encoded.word_ids(i):
                first = word is not None and word != previous
                # Without gold tags (prediction) mark first sub-tokens with 0 so predict knows where words start.
                row.append((tags[i][word] if tags is not None else 0) if first else IGNORED)
                previous = word
            labels.append(row)
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels}

    def forward(self, output: BackboneOutput, batch: Mapping[str, Any]) -> HeadOutput:
        logits = self.classifier(self.dropout(self.norm(output.hidden))).float()  # (B, T, L)
        loss = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORED) if "labels" in batch else None
        return HeadOutput(loss=loss, logits=logits)

    def predict(self, model: ModelAccess, batch: Mapping[str, Any]) -> list[Any]:
        logits = self(model.backbone_output(batch), {k: v for k, v in batch.items() if k != "labels"}).logits
        chosen = logits.argmax(-1)
        keep = batch["labels"] != IGNORED  # first sub-tokens of the words that survived truncation
        return [[self.label_names[int(t)] for t in row[mask]] for row, mask in zip(chosen, keep, strict=True)]

    def references(self, batch: Mapping[str, Any]) -> list[Any]:
        return [[self.label_names[int(t)] for t in row[row != IGNORED]] for row in batch["labels"]]

    def example_from_text(self, text: str) -> dict[str, Any]:
        return {self.config.tokens_field: text.split()}

    def validate_example(self, example: Mapping[str, Any]) -> str | None:
        tokens, tags = self.config.tokens_field, self.config.tags_field
        for field, setting in ((tokens, "tokens_field"), (tags, "tags_field")):
            if field not in example:
                return f"field {field!r} is missing (fields: {', '.join(sorted(example))}); set head.{setting} or rename the column"
        words, labels = example[tokens], example[tags]
        if not isinstance(words, list) or not words or not all(isinstance(w, str) for w in words):
            return f"field {tokens!r} is {words!r}, not a non-empty list of words"
        if not isinstance(labels, list) or len(labels) != len(words):
            return f"field {tags!r} has {len(labels) if isinstance(labels, list) else labels!r} labels for {len(words)} words"
        for position, label in enumerate(labels):
            if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < self.num_labels:
                return (
                    f"label {label!r} of word {position} ({words[position]!r}) in field {tags!r} is outside the head's "
                    f"{self.num_labels} classes (0-{self.num_labels - 1})"
                )
        return None
