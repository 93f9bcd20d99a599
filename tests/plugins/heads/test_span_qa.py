"""The span-QA head: answer spans from character offsets, only context tokens, answers cut from the context text."""

from __future__ import annotations

from typing import Any

import torch
from mtkit_heads.config import SpanQaHeadConfig
from mtkit_heads.span_qa import NO_ANSWER, SpanQaHead, _best_spans

from mtkit import BackboneOutput, TaskInfo
from tests.plugins.components_support import tiny_bert  # noqa: F401  (fixture)

EXAMPLES = {
    "question": ["Where was Ana born?", "What does Bo do?"],
    "context": ["Ana was born in Porto Alegre in 1990.", "Bo works as a pilot."],
    "answer": ["Porto Alegre", ["pilot", "a pilot"]],
}


class _Fixed:
    """A ModelAccess whose backbone output is fixed, so the head's span logic is tested directly."""

    def __init__(self, hidden: torch.Tensor) -> None:
        self.hidden = hidden

    def backbone_output(self, batch: Any) -> BackboneOutput:
        return BackboneOutput(hidden=self.hidden)


def _head(backbone: Any, **config: Any) -> SpanQaHead:
    return SpanQaHead(SpanQaHeadConfig(**config), backbone=backbone, task=TaskInfo("qa", 0))


def test_span_qa_encode_marks_answer_tokens_from_character_offsets(tiny_bert: Any) -> None:
    head = _head(tiny_bert)
    encoded = head.encode(EXAMPLES, tiny_bert.tokenizer, 64)
    tokens = tiny_bert.tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    start, end = encoded["start_positions"][0], encoded["end_positions"][0]
    assert tiny_bert.tokenizer.convert_tokens_to_string(tokens[start : end + 1]) == "porto alegre"
    offsets = encoded["context_offsets"][0]
    assert offsets[0] == [-1, -1] and offsets[1] == [-1, -1]  # [CLS] and the question are not context
    assert EXAMPLES["context"][0][offsets[start][0] : offsets[end][1]] == "Porto Alegre"


def test_span_qa_truncated_answer_is_ignored_by_the_loss(tiny_bert: Any) -> None:
    head = _head(tiny_bert)
    long = {"question": ["q?"], "context": ["word " * 40 + "target"], "answer": ["target"]}
    encoded = head.encode(long, tiny_bert.tokenizer, 16)
    assert encoded["start_positions"] == [NO_ANSWER] and encoded["end_positions"] == [NO_ANSWER]
    batch = head.collate({**long, **encoded}, tiny_bert.tokenizer)
    out = head(BackboneOutput(hidden=torch.randn(1, batch["input_ids"].shape[1], 32)), batch)
    assert out.loss is not None and torch.isfinite(out.loss)


def test_span_qa_predict_extracts_the_best_context_span(tiny_bert: Any) -> None:
    head = _head(tiny_bert)
    encoded = head.encode(EXAMPLES, tiny_bert.tokenizer, 64)
    batch = head.collate({**EXAMPLES, **encoded}, tiny_bert.tokenizer)
    # Hidden states that point the span layer at the gold positions: weight rows pick dims 0 and 1.
    with torch.no_grad():
        head.span.weight.zero_()
        head.span.bias.zero_()
        head.span.weight[0, 0] = head.span.weight[1, 1] = 1.0
    hidden = torch.zeros(2, batch["input_ids"].shape[1], 32)
    for i in range(2):
        hidden[i, batch["start_positions"][i], 0] = 5.0
        hidden[i, batch["end_positions"][i], 1] = 5.0
        hidden[i, 1, 0] = 50.0  # a question token scores highest but may not start an answer
    assert head.predict(_Fixed(hidden), batch) == ["Porto Alegre", "pilot"]
    assert head.references(batch) == ["Porto Alegre", "pilot"]


def test_span_qa_best_span_respects_order_and_length() -> None:
    start = torch.tensor([[0.0, 0.0, 9.0, 0.0, 0.0]])
    end = torch.tensor([[8.0, 0.0, 0.0, 0.0, 7.0]])  # end before start is not allowed
    assert _best_spans(start, end, 5) == ([2], [4])
    assert _best_spans(start, end, 2) == ([2], [2]) or _best_spans(start, end, 2)[1][0] <= 3


def test_span_qa_validate_example_names_the_problem(tiny_bert: Any) -> None:
    head = _head(tiny_bert, answer_start_field="start")
    good = {"question": "q", "context": "Bo works as a pilot.", "answer": "pilot", "start": 14}
    assert head.validate_example(good) is None
    assert "field 'start' is missing" in head.validate_example({k: v for k, v in good.items() if k != "start"})
    assert "answer 'pilot' (field 'answer') does not occur in the context at offset 3" in head.validate_example({**good, "start": 3})
    assert "not a non-empty answer text" in head.validate_example({**good, "answer": ""})
    assert "does not occur in the context anywhere" in _head(tiny_bert).validate_example({**good, "answer": "doctor"})
