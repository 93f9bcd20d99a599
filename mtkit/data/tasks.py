"""Task data: seeded splits, row checks, tokenization through `datasets.map`, and batch plans.

A batch plan is a pure function of (seed, phase, step): which task (or tasks) each step draws
from and which examples it takes. Resuming a run replays the plan, so a resumed run sees exactly
the batches an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import datasets
import torch

from mtkit.api.config import DatasetConfig
from mtkit.api.errors import MtkitError
from mtkit.api.interfaces import TRUNCATED, DatasetSource, Head, Scheduler

__all__ = [
    "CUT_WARNING",
    "ROW_COLUMN",
    "BatchPlan",
    "RowLocating",
    "TaskData",
    "check_rows",
    "cut_warnings",
    "encode_examples",
    "micro_batches",
    "plan_batches",
    "prepare_task_data",
]

ROW_COLUMN = "_mtkit_row"
"""Column added to each loaded split: a row's index in the split the dataset gave (counted from 0, before any
held-out split or shuffle), so that a message about a row names the row the user can find in the data."""


@runtime_checkable
class RowLocating(Protocol):
    """A dataset that can say where a loaded row sits in its files (optional capability of a DatasetSource)."""

    def row_location(self, split: str, row: int) -> str | None:
        """Where row `row` of loaded split `split` sits, e.g. `data/reviews.csv line 5`; None if unknown."""


CUT_WARNING = 0.05
"""A share of a split's inputs cut to max_length above which the run warns (raise the task's max_length)."""


def cut_warnings(task: str, info: dict[str, Any], max_length: int) -> list[str]:
    """Warnings for the splits of a task whose inputs were cut to max_length more often than CUT_WARNING."""
    out = []
    for split, count in info.get("cut", {}).items():
        size = info.get(split, 0)
        if size and count / size > CUT_WARNING:
            out.append(
                f"task {task!r}: {count} of {size} {split} inputs ({100 * count / size:.0f}%) are longer than max_length "
                f"{max_length} and were cut; raise tasks.{task}.max_length (or run.max_length) if that loses what matters"
            )
    return out


@dataclass
class TaskData:
    name: str
    train: datasets.Dataset  # encoded
    eval: datasets.Dataset  # encoded
    split: dict[str, Any]  # sizes and seeds, recorded in the run directory
    validation: datasets.Dataset | None = None  # encoded; carved from train when the dataset sets validation_size


def _hold_out(examples: datasets.Dataset, size: float, seed: int) -> tuple[datasets.Dataset, datasets.Dataset, str]:
    """A seeded split of `examples` into (kept, held out), stratified by label where every class allows it."""
    stratify = "label" if isinstance(examples.features.get("label"), datasets.ClassLabel) else None
    try:
        parts = examples.train_test_split(test_size=size, seed=seed, stratify_by_column=stratify)
    except ValueError:  # too few examples per class to stratify (small data): split without stratifying
        if stratify is None:
            raise
        stratify = None
        parts = examples.train_test_split(test_size=size, seed=seed)
    return parts["train"], parts["test"], f"train_test_split(test_size={size}, seed={seed}, stratify={stratify})"


def _split(
    source: DatasetSource, loaded: datasets.DatasetDict, config: DatasetConfig, task: str
) -> tuple[datasets.Dataset, datasets.Dataset, datasets.Dataset | None, dict[str, Any]]:
    if "train" not in loaded:
        raise MtkitError(f"task {task!r}: dataset {source.name!r} returned no 'train' split (got {sorted(loaded)})")
    train = _numbered(loaded["train"])
    how = "source"
    if "test" in loaded:
        test = _numbered(loaded["test"])
    else:
        if len(train) < 2:
            raise MtkitError(f"task {task!r}: dataset {source.name!r} has {len(train)} example(s); a held-out split needs at least 2")
        train, test, how = _hold_out(train, config.test_size, config.split_seed)
    validation, validation_how = None, None
    if config.validation_size is not None:
        if len(train) < 2:
            raise MtkitError(
                f"task {task!r}: dataset {source.name!r} has {len(train)} training example(s); "
                "a validation split needs at least 2"
            )
        train, validation, validation_how = _hold_out(train, config.validation_size, config.split_seed)
    full = {"train": len(train), "test": len(test)}
    if config.max_train_examples is not None and len(train) > config.max_train_examples:
        train = train.shuffle(seed=config.split_seed).select(range(config.max_train_examples))
    if config.max_eval_examples is not None and len(test) > config.max_eval_examples:
        test = test.shuffle(seed=config.split_seed).select(range(config.max_eval_examples))
    if validation is not None and config.max_eval_examples is not None and len(validation) > config.max_eval_examples:
        validation = validation.shuffle(seed=config.split_seed).select(range(config.max_eval_examples))
    for split_name, split in (("train", train), ("test", test), ("validation", validation)):
        if split is not None and len(split) == 0:
            raise MtkitError(f"task {task!r}: the {split_name} split of dataset {source.name!r} is empty; check its files and filters")
    info = {"dataset": source.name, "split": how, "split_seed": config.split_seed, "available": full, "train": len(train), "test": len(test)}
    if validation is not None:
        info |= {"validation": len(validation), "validation_split": validation_how}
    return train, test, validation, info


def _numbered(split: datasets.Dataset) -> datasets.Dataset:
    if ROW_COLUMN in split.column_names:
        return split
    return split.add_column(ROW_COLUMN, list(range(len(split))))


def _check_rows(
    splits: dict[str, datasets.Dataset], origins: dict[str, str], head: Head, task: str, source: DatasetSource | None
) -> None:
    """Every row of every split passes the head's check; else one message naming the first bad row in data order."""
    problems: list[tuple[str, int, str]] = []  # (source split, row, problem)
    total = 0
    for name, split in splits.items():
        total += len(split)
        for example in split:
            row = example.pop(ROW_COLUMN)
            problem = head.validate_example(example)
            if problem is not None:
                problems.append((origins[name], row, problem))
    if not problems:
        return
    if len(problems) == total > 1 and len({p for _, _, p in problems}) == 1:  # a missing field, a wrong setting
        raise MtkitError(f"task {task!r}, every row ({total} of them): {problems[0][2]}")
    origin, row, problem = min(problems, key=lambda p: (p[0] != "train", p[1]))
    where = source.row_location(origin, row) if isinstance(source, RowLocating) else None
    more = f" ({len(problems) - 1} more row(s) have problems)" if len(problems) > 1 else ""
    raise MtkitError(f"task {task!r}, {origin} row {row}" + (f" ({where})" if where else "") + f": {problem}{more}")


def check_rows(split: datasets.Dataset, head: Head, task: str, name: str) -> None:
    """Every row of one split of examples (a probe's, say) passes the head's check; else a message naming the row."""
    _check_rows({name: _numbered(split)}, {name: name}, head, task, None)


def prepare_task_data(
    task: str,
    source: DatasetSource,
    loaded: datasets.DatasetDict,
    head: Head,
    tokenizer: Any,
    max_length: int,
    encode: tuple[str, ...] | None = None,
) -> TaskData:
    """Split, check and encode one task's loaded examples (the splits named in `encode`, default all; the others stay raw)."""
    train, test, validation, info = _split(source, loaded, source.config, task)
    splits = {"train": train, "test": test} | ({"validation": validation} if validation is not None else {})
    chosen = {name: split for name, split in splits.items() if encode is None or name in encode}
    # Validation rows, and test rows when the dataset has no test split, were carved from its train split.
    origins = {"train": "train", "validation": "train", "test": "test" if "test" in loaded else "train"}
    _check_rows(chosen, origins, head, task, source)
    encoded = {
        name: encode_examples(split, head, tokenizer, max_length, f"{task}/{name}") if name in chosen else split
        for name, split in splits.items()
    }
    cut = {name: sum(split[TRUNCATED]) for name, split in encoded.items() if name in chosen and TRUNCATED in split.column_names}
    if cut:
        info["cut"] = cut  # inputs longer than max_length, cut by the head
    return TaskData(task, encoded["train"], encoded["test"], info, encoded.get("validation"))


def _source_of(cls: type) -> str:
    try:
        return hashlib.sha256(inspect.getsource(cls).encode()).hexdigest()[:16]
    except (OSError, TypeError):  # no source to read (a class made at run time): its qualified name
        return f"{cls.__module__}.{cls.__qualname__}"


def encode_examples(examples: datasets.Dataset, head: Head, tokenizer: Any, max_length: int, name: str) -> datasets.Dataset:
    """Examples tokenized by `head` (a `datasets.map`, cached by content)."""

    def encode(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return head.encode(batch, tokenizer, max_length)

    # An explicit fingerprint: hashing the head (a module with random weights) would defeat caching. The head class's
    # source is part of it, so that a changed `encode` (a plugin upgrade) never reuses encodings made by the old one.
    key = json.dumps(
        [name, head.name, head.config.model_dump(mode="json"), getattr(tokenizer, "name_or_path", ""), max_length, _source_of(type(head))]
    )
    fingerprint = hashlib.sha256(f"{examples._fingerprint}{key}".encode()).hexdigest()[:16]
    return examples.map(encode, batched=True, desc=f"encoding {name}", new_fingerprint=fingerprint)


@dataclass(frozen=True)
class BatchPlan:
    """For every step of a phase, the (task index, example indices) pieces its batch is made of."""

    steps: list[list[tuple[int, list[int]]]]


def _generator(*parts: int) -> torch.Generator:
    seed = 0
    for part in parts:
        seed = (seed * 1_000_003 + part) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


class _Stream:
    """An endless stream of example indices of one task: a fresh seeded permutation per epoch."""

    def __init__(self, size: int, seed: int, phase: int, task: int) -> None:
        self.size, self.key = size, (seed, phase, task)
        self.epoch, self.order, self.pos = 0, self._permutation(0), 0

    def _permutation(self, epoch: int) -> list[int]:
        return torch.randperm(self.size, generator=_generator(*self.key, epoch)).tolist()

    def take(self, count: int) -> list[int]:
        out: list[int] = []
        while len(out) < count:
            if self.pos == self.size:
                self.epoch, self.pos = self.epoch + 1, 0
                self.order = self._permutation(self.epoch)
            n = min(count - len(out), self.size - self.pos)
            out += self.order[self.pos : self.pos + n]
            self.pos += n
        return out


Pieces = list[tuple[int, list[int]]]
"""(task index, example indices) pieces that make one batch."""


def _share(pieces: Pieces, part: int, parts: int) -> Pieces:
    """Part `part` of `parts` equal, contiguous shares of the batch's samples, in order, as pieces."""
    flat = [(task, row) for task, rows in pieces for row in rows]
    size = len(flat) // parts
    out: Pieces = []
    for task, row in flat[part * size : (part + 1) * size]:
        if out and out[-1][0] == task:
            out[-1][1].append(row)
        else:
            out.append((task, [row]))
    return out


def micro_batches(pieces: Pieces, accumulation: int) -> list[Pieces]:
    """A step's batch cut into `accumulation` equal micro-batches whose gradients add up to the step's."""
    return [_share(pieces, i, accumulation) for i in range(accumulation)] if accumulation > 1 else [pieces]


def plan_batches(
    scheduler: Scheduler,
    task_sizes: Sequence[int],
    *,
    steps: int,
    batch_size: int,
    mixed: bool,
    seed: int,
    phase: int,
    processes: int = 1,
    process_index: int = 0,
) -> BatchPlan:
    """Draw every step's tasks from the scheduler and its examples from per-task streams.

    Every process draws the same global batch of `batch_size * processes` samples and keeps its own contiguous share,
    so P processes with batch B see exactly the samples one process with batch P x B sees.
    """
    streams = [_Stream(size, seed, phase, t) for t, size in enumerate(task_sizes)]
    rng = _generator(seed, phase, 7919)
    total = batch_size * processes
    plan = []
    for step in range(steps):
        probs = torch.tensor(scheduler.probabilities(step, steps), dtype=torch.float64)
        if mixed:
            draws = torch.multinomial(probs, total, replacement=True, generator=rng)
            counts = torch.bincount(draws, minlength=len(task_sizes)).tolist()
        else:
            counts = [0] * len(task_sizes)
            counts[int(torch.multinomial(probs, 1, generator=rng))] = total
        pieces = [(t, streams[t].take(n)) for t, n in enumerate(counts) if n > 0]
        plan.append(_share(pieces, process_index, processes) if processes > 1 else pieces)
    return BatchPlan(plan)
