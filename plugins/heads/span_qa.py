"""`span_qa`: extractive question answering (SQuAD-style start/end logits over context tokens).

Questions and contexts are encoded as pairs; only context tokens may start or end an answer. The
tokenizer's character offsets map the chosen token span back to the exact context text, so the
predictions are answer strings and the references are the gold answer texts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkit import Backbone, BackboneOutput, Head, HeadOutput, ModelAccess, TaskInfo, pad_batch, peft_format

from ._peft import linear_tensors, load_linear
from .config import SpanQaHeadConfig

NO_ANSWER = -100  # label of an answer cut off by truncation: ignored by the loss


class SpanQaHead(Head):
    """Extractive QA: start/end logits over the context tokens; the answer is the best-scoring span of context text."""

    name = "span_qa"
    config_class = SpanQaHeadConfig
    config: SpanQaHeadConfig

    def __init__(self, config: SpanQaHeadConfig, *, backbone: Backbone, task: TaskInfo) -> None:
        super().__init__(config, backbone=backbone, task=task)
        self.span = nn.Linear(backbone.hidden_size, 2)

    def peft_head(self, prefix: str) -> peft_format.PeftHeadWeights:
        """transformers' extractive QA head: `qa_outputs` (start and end logits) over each token."""
        return peft_format.PeftHeadWeights("QUESTION_ANS", linear_tensors(self.span, "qa_outputs"), ["qa_outputs"])

    def load_peft_head(self, tensors: Mapping[str, Tensor], prefix: str) -> None:
        load_linear(self.span, tensors, "qa_outputs", "train the adapter on a question answering model with a qa_outputs layer")

    def _answer(self, value: Any) -> str:
        return value[0] if isinstance(value, list) else value

    def encode(self, examples: Mapping[str, list[Any]], tokenizer: Any, max_length: int) -> dict[str, list[Any]]:
        contexts = examples[self.config.context_field]
        encoded = tokenizer(
            examples[self.config.question_field], contexts, truncation="only_second", max_length=max_length, return_offsets_mapping=True
        )
        offsets = []  # per token [start, end) in the context, [-1, -1] for question and special tokens
        for i in range(len(contexts)):
            sequence = encoded.sequence_ids(i)
            offsets.append([list(o) if s == 1 else [-1, -1] for o, s in zip(encoded["offset_mapping"][i], sequence, strict=True)])
        # The context text and answers travel with the encoding, so collate() needs nothing else.
        out = {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "context_offsets": offsets,
            "span_context": list(contexts),
        }
        if self.config.answer_field in examples:  # absent when predicting new inputs
            out["span_answer"] = [self._answer(a) for a in examples[self.config.answer_field]]
            starts, ends = [], []
            for i, (context, answer) in enumerate(zip(contexts, examples[self.config.answer_field], strict=True)):
                text = self._answer(answer)
                begin = examples[self.config.answer_start_field][i] if self.config.answer_start_field else context.find(text)
                start, end = _token_span(offsets[i], begin, begin + len(text))
                starts.append(start)
                ends.append(end)
            out["start_positions"], out["end_positions"] = starts, ends
        return out

    def collate(self, features: Mapping[str, list[Any]], tokenizer: Any) -> dict[str, Any]:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        batch = pad_batch({"input_ids": features["input_ids"], "attention_mask": features["attention_mask"]}, pad_id)
        width = batch["input_ids"].shape[1]
        batch["context_offsets"] = torch.tensor([list(o) + [[-1, -1]] * (width - len(o)) for o in features["context_offsets"]])  # (B, T, 2)
        batch["contexts"] = list(features["span_context"])
        if "start_positions" in features:
            batch["start_positions"] = torch.tensor(features["start_positions"])
            batch["end_positions"] = torch.tensor(features["end_positions"])
            batch["answers"] = list(features["span_answer"])
        return batch

    def forward(self, output: BackboneOutput, batch: Mapping[str, Any]) -> HeadOutput:
        logits = self.span(output.hidden).float()  # (B, T, 2)
        in_context = batch["context_offsets"][..., 0] >= 0  # (B, T)
        logits = logits.masked_fill(~in_context.unsqueeze(-1), torch.finfo(torch.float32).min)
        start, end = logits.unbind(-1)
        loss = None
        if "start_positions" in batch:
            kept = batch["start_positions"] != NO_ANSWER  # answers cut off by truncation teach nothing
            if kept.any():
                loss = (F.cross_entropy(start[kept], batch["start_positions"][kept]) + F.cross_entropy(end[kept], batch["end_positions"][kept])) / 2
            else:
                loss = self.span.weight.sum() * 0.0  # a zero that keeps the graph, so backward still runs
        return HeadOutput(loss=loss, logits=logits)

    def predict(self, model: ModelAccess, batch: Mapping[str, Any]) -> list[Any]:
        inputs = {k: v for k, v in batch.items() if k not in ("start_positions", "end_positions")}
        logits = self(model.backbone_output(batch), inputs).logits
        start, end = _best_spans(logits[..., 0], logits[..., 1], self.config.max_answer_tokens)
        answers = []
        for i, context in enumerate(batch["contexts"]):
            first, last = int(batch["context_offsets"][i, start[i], 0]), int(batch["context_offsets"][i, end[i], 1])
            answers.append(context[first:last] if first >= 0 and last >= first else "")
        return answers

    def references(self, batch: Mapping[str, Any]) -> list[Any]:
        return list(batch["answers"])

    def example_from_text(self, text: str) -> dict[str, Any]:
        """`question | context` (for `mtkit predict`)."""
        question, _, context = text.partition("|")
        return {self.config.question_field: question.strip(), self.config.context_field: context.strip()}

    def validate_example(self, example: Mapping[str, Any]) -> str | None:
        cfg = self.config
        names = {cfg.question_field: "question_field", cfg.context_field: "context_field", cfg.answer_field: "answer_field"}
        if cfg.answer_start_field:
            names[cfg.answer_start_field] = "answer_start_field"
        for field, setting in names.items():
            if field not in example:
                return f"field {field!r} is missing (fields: {', '.join(sorted(example))}); set head.{setting} or rename the column"
        for field in (cfg.question_field, cfg.context_field):
            if not isinstance(example[field], str):
                return f"field {field!r} is {example[field]!r}, not text"
        answer = self._answer(example[cfg.answer_field])
        if not isinstance(answer, str) or not answer:
            return f"field {cfg.answer_field!r} is {example[cfg.answer_field]!r}, not a non-empty answer text"
        context = example[cfg.context_field]
        begin = example[cfg.answer_start_field] if cfg.answer_start_field else context.find(answer)
        if not isinstance(begin, int) or context[begin : begin + len(answer)] != answer:
            where = f"at offset {begin!r} (field {cfg.answer_start_field!r})" if cfg.answer_start_field else "anywhere"
            return f"answer {answer!r} (field {cfg.answer_field!r}) does not occur in the context {where}"
        return None


def _token_span(offsets: list[list[int]], begin: int, end: int) -> tuple[int, int]:
    """Token indices of the first and last context tokens covering characters [begin, end)."""
    start = next((t for t, (s, e) in enumerate(offsets) if s >= 0 and s <= begin < e), None)
    last = next((t for t, (s, e) in reversed(list(enumerate(offsets))) if s >= 0 and s < end <= e), None)
    if start is None or last is None or last < start:
        return NO_ANSWER, NO_ANSWER  # the answer was truncated away
    return start, last


def _best_spans(start: Tensor, end: Tensor, longest: int) -> tuple[list[int], list[int]]:
    """argmax over start <= end < start + longest of start[s] + end[e].  (B, T), (B, T) -> B starts, B ends"""
    t = start.shape[1]
    scores = start.unsqueeze(2) + end.unsqueeze(1)  # (B, T, T)
    index = torch.arange(t, device=start.device)
    allowed = (index[None, :] >= index[:, None]) & (index[None, :] < index[:, None] + longest)  # (T, T)
    scores = scores.masked_fill(~allowed, float("-inf"))
    best = scores.flatten(1).argmax(-1)
    return (best // t).tolist(), (best % t).tolist()
