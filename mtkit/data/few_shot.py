"""Few-shot data of held-out tasks: k training examples per task, drawn with a seed, recorded in the run directory.

A composition phase (`phases.N.few_shot`) sees a held-out task only through these examples. They come from the
task's training split (after any validation split was carved from it), so they never overlap its test split.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch

from mtkit.api.seeding import component_seed
from mtkit.data.tasks import ROW_COLUMN, TaskData

__all__ = ["draw_few_shot", "few_shot_rows"]


def few_shot_rows(size: int, examples: int, seed: int, task: str) -> list[int]:
    """Positions (in the training split) of the `examples` rows drawn for `task` with `seed`; all rows if fewer."""
    generator = torch.Generator().manual_seed(component_seed(seed, f"tasks.{task}.few_shot"))  # independent per task
    return sorted(torch.randperm(size, generator=generator)[: min(examples, size)].tolist())


def draw_few_shot(tasks: Mapping[str, TaskData], names: list[str], examples: int, seed: int) -> tuple[dict[str, TaskData], dict[str, Any]]:
    """Each task of `names` with its training split cut to its few-shot draw, and what data.json records of it.

    The record gives, per task, k, the seed, the split's size and the drawn rows as the dataset numbers them
    (`_mtkit_row`, their position in the split the dataset gave), so a reader can find the exact examples.
    """
    out: dict[str, TaskData] = {}
    record: dict[str, Any] = {}
    for name in names:
        data = tasks[name]
        positions = few_shot_rows(len(data.train), examples, seed, name)
        train = data.train.select(positions)
        out[name] = replace(data, train=train, validation=None)
        rows = train[ROW_COLUMN] if ROW_COLUMN in train.column_names else positions
        record[name] = {"examples": examples, "seed": seed, "drawn": len(positions), "from": len(data.train), "rows": list(rows)}
    return out, record
