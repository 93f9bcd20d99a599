"""The token-classification head: labels on first sub-tokens, -100 elsewhere, word-level predictions."""

from __future__ import annotations

from typing import Any

import torch
from mtkit_heads.config import TokenClassificationHeadConfig
from mtkit_heads.token_classification import IGNORED, TokenClassificationHead

from mtkit import BackboneOutput, TaskInfo
from tests.plugins.components_support import tiny_bert  # noqa: F401  (fixture)

NAMES = ("O", "B-PER", "I-PER", "B-LOC")
EXAMPLES = {"tokens": [["Zbigniew", "Brzezinski", "visited", "Oslo"]], "tags": [[1, 2, 0, 3]]}


def _head(backbone: Any) -> TokenClassificationHead:
    return TokenClassificationHead(TokenClassificationHeadConfig(), backbone=backbone, task=TaskInfo("ner", 0, NAMES))


def test_token_classification_labels_only_first_sub_tokens(tiny_bert: Any) -> None:
    head = _head(tiny_bert)
    encoded = head.encode(EXAMPLES, tiny_bert.tokenizer, 64)
    words = tiny_bert.tokenizer(EXAMPLES["tokens"], is_split_into_words=True).word_ids(0)
    labels = encoded["labels"][0]
    assert len(labels) == len(words) and len(words) > 6  # the names split into several sub-tokens
    assert [l for l in labels if l != IGNORED] == [1, 2, 0, 3]
    assert labels[0] == IGNORED and labels[-1] == IGNORED  # [CLS], [SEP]
    firsts = [i for i, w in enumerate(words) if w is not None and (i == 0 or words[i - 1] != w)]
    assert [i for i, l in enumerate(labels) if l != IGNORED] == firsts


def test_token_classification_predictions_and_references_are_word_label_sequences(tiny_bert: Any) -> None:
    head = _head(tiny_bert)
    batch = head.collate(head.encode(EXAMPLES, tiny_bert.tokenizer, 64), tiny_bert.tokenizer)

    class Fixed:
        def backbone_output(self, batch: Any) -> BackboneOutput:
            return BackboneOutput(hidden=torch.zeros(1, batch["input_ids"].shape[1], 32))

    with torch.no_grad():
        head.classifier.weight.zero_()
        head.classifier.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 1.0]))
    assert head.predict(Fixed(), batch) == [["B-LOC"] * 4]
    assert head.references(batch) == [["B-PER", "I-PER", "O", "B-LOC"]]
    out = head(BackboneOutput(hidden=torch.randn(1, batch["input_ids"].shape[1], 32)), batch)
    assert torch.isfinite(out.loss)


def test_token_classification_validate_example_names_word_and_label(tiny_bert: Any) -> None:
    head = _head(tiny_bert)
    assert head.validate_example({"tokens": ["a", "b"], "tags": [0, 3]}) is None
    assert "field 'tags' is missing" in head.validate_example({"tokens": ["a"]})
    assert "has 1 labels for 2 words" in head.validate_example({"tokens": ["a", "b"], "tags": [0]})
    problem = head.validate_example({"tokens": ["a", "b"], "tags": [0, 7]})
    assert "label 7 of word 1 ('b')" in problem and "outside the head's 4 classes (0-3)" in problem
