"""Input views: training examples shown in another form while keeping their task and label.

A view replaces some examples of a batch by a contiguous span of their tokens, of a length drawn from a
range, or by a run of whole sentences (a news article's headline or one of its sentences, a passage's
first line), so that inputs of every task come in every length and a router cannot tell tasks apart by the
form of their inputs. Drawn from a generator seeded by (run seed, phase, step): a resumed run sees the same views.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import torch

from mtkit.recipe.schema import ViewSection

__all__ = ["sentence_end_ids", "span_views"]


def sentence_end_ids(tokenizer: Any) -> frozenset[int]:
    """The ids of the tokens '.', '!' and '?' in the tokenizer's vocabulary (those it has as tokens of their own)."""
    unknown = getattr(tokenizer, "unk_token_id", None)
    ids = tokenizer.convert_tokens_to_ids([".", "!", "?"])
    return frozenset(i for i in ids if i is not None and i != unknown)


def _croppable(features: Mapping[str, list[Any]]) -> bool:
    """Sequence inputs with one label per example (classification-like); token-level labels or nested inputs are left whole."""
    ids = features.get("input_ids")
    if not ids or not isinstance(ids[0], list) or (ids[0] and isinstance(ids[0][0], list)):
        return False
    labels = features.get("labels")
    return not (labels and isinstance(labels[0], list))


def span_views(
    features: Mapping[str, list[Any]],
    view: ViewSection,
    generator: torch.Generator,
    special: Collection[int],
    sentence_ends: Collection[int] = (),
) -> dict[str, list[Any]]:
    """The batch's columns with a share of its examples cut to a random span (special tokens kept): of tokens, or
    with `view.unit = "sentences"` of whole sentences, each ending at a token in `sentence_ends` (or the input's end)."""
    out = dict(features)
    if not _croppable(features):
        return out
    ids = [list(row) for row in features["input_ids"]]
    pairs = features.get("token_type_ids")
    for i, row in enumerate(ids):
        if float(torch.rand((), generator=generator)) >= view.probability:
            continue
        if pairs is not None and any(pairs[i]):
            continue  # a sentence pair: a span would cut across its two texts
        lead = next((j for j, t in enumerate(row) if t not in special), len(row))
        tail = next((j for j, t in enumerate(reversed(row)) if t not in special), 0)
        inner = row[lead : len(row) - tail]
        span = _sentence_span(inner, view, generator, sentence_ends) if view.unit == "sentences" else _token_span(inner, view, generator)
        if span is not None:
            ids[i] = row[:lead] + inner[span[0] : span[1]] + row[len(row) - tail :]
    out["input_ids"] = ids
    if "attention_mask" in features:
        out["attention_mask"] = [[1] * len(row) for row in ids]
    if pairs is not None:
        out["token_type_ids"] = [list(p) if len(p) == len(row) else [0] * len(row) for p, row in zip(pairs, ids, strict=True)]
    return out


def _token_span(inner: list[int], view: ViewSection, generator: torch.Generator) -> tuple[int, int] | None:
    """A random span of min_tokens to max_tokens tokens; None if the input is no longer than the drawn length."""
    length = int(torch.randint(view.min_tokens, view.max_tokens + 1, (), generator=generator))
    if len(inner) <= length:
        return None
    start = int(torch.randint(0, len(inner) - length + 1, (), generator=generator))
    return start, start + length


def _sentence_span(inner: list[int], view: ViewSection, generator: torch.Generator, ends: Collection[int]) -> tuple[int, int] | None:
    """A random run of 1 to max_sentences whole sentences; None if the input has no more sentences than drawn."""
    bounds = [0] + [j + 1 for j, t in enumerate(inner[:-1]) if t in ends] + [len(inner)]
    sentences = len(bounds) - 1
    count = int(torch.randint(1, view.max_sentences + 1, (), generator=generator))
    if sentences <= count:
        return None
    first = int(torch.randint(0, sentences - count + 1, (), generator=generator))
    return bounds[first], bounds[first + count]
