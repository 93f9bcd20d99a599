"""Probes: extra evaluation sets of a task, its inputs in another form (the first sentence of an article, a cut)
or from another distribution (another dataset with the same labels), scored like its held-out split."""

from __future__ import annotations

import re
from collections.abc import Sequence

import datasets

from mtkit.api.errors import MtkitError
from mtkit.api.interfaces import DatasetSource
from mtkit.data.tasks import _split
from mtkit.recipe.schema import ProbeSection

__all__ = ["first_sentence", "held_out", "transformed"]

_SENTENCE_END = re.compile(r"[.!?]['\")]?\s+(?=[A-Z0-9\"'(])")
_ABBREVIATION = re.compile(r"(?:^|\s)(?:(?:[A-Za-z]\.)+[A-Za-z]?|Mr|Mrs|Ms|Dr|St|Jr|Sr|Mt|vs|No|Co|Corp|Inc|Ltd|Gen|Gov|Sen|Rep)\.?$")


def first_sentence(text: str) -> str:
    """The text up to its first sentence end (., ! or ? before a space and a capital), not counting abbreviations
    (U.S., Mr.); the whole text if it has none."""
    text = text.strip()
    for match in _SENTENCE_END.finditer(text):
        if not _ABBREVIATION.search(text[: match.start() + 1]):
            return text[: match.end()].rstrip()
    return text


def held_out(source: DatasetSource, loaded: datasets.DatasetDict, where: str, task_labels: Sequence[str] | None) -> datasets.Dataset:
    """A probe dataset's held-out split (made with its own split settings), checked to carry the task's labels."""
    _, test, _, _ = _split(source, loaded, source.config, where)
    labels = source.label_names
    if labels is not None and task_labels is not None and list(labels) != list(task_labels):
        raise MtkitError(f"the probe's labels {list(labels)!r} are not the task's {list(task_labels)!r}; a probe is scored with the task's head")
    return test


def transformed(examples: datasets.Dataset, probe: ProbeSection, where: str) -> datasets.Dataset:
    """The examples with the probe's transform applied to its field."""
    if probe.transform == "none":
        return examples
    if probe.field not in examples.column_names:
        raise MtkitError(f"{where}.field {probe.field!r} is not a field of the examples (fields: {', '.join(examples.column_names)})")
    return examples.map(lambda text: {probe.field: first_sentence(text)}, input_columns=probe.field, desc=f"probe {where}")
