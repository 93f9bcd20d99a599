"""Fixtures for the lm head: a tiny random Llama (SmolLM2's real tokenizer) with one LoRA and an lm head."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import datasets
import pytest

from mtkit import DatasetConfig, DatasetSource, Registry, TaskInfo
from mtkit.model.build import build_model
from mtkit.model.multitask import MultiTaskModel
from mtkit.recipe.resolve import resolve
from tests.conftest import TINY_LLAMA

ROWS = {
    "text": ["Shares in the carmaker fell sharply after a profit warning on Monday.", "The band will tour Europe next spring."],
    "headline": ["Carmaker shares fall", "Band plans Europe tour"],
}


def lm_recipe(**head: Any) -> dict[str, Any]:
    table = {"type": "lm", "prompt_template": "Article: {text}\nHeadline:", "target_template": " {headline}", "max_new_tokens": 4}
    table.update(head)
    return {
        "run": {"name": "lm", "seed": 0, "batch_size": 2, "max_length": 48},
        "backbone": copy.deepcopy(TINY_LLAMA),
        "adapters": {"news": {"type": "lora", "rank": 4, "init": "random", "target_modules": ["q_proj", "v_proj"]}},
        "tasks": {"news": {"dataset": {"type": "bbc_headlines"}, "head": table, "metrics": ["rouge"]}},
        "phases": [{"name": "train", "steps": 1, "train": ["adapters"]}],
    }


@pytest.fixture()
def make_lm(registry: Registry) -> Callable[..., MultiTaskModel]:
    """Build the tiny model with head options overridden."""

    def make(**head: Any) -> MultiTaskModel:
        resolved = resolve(lm_recipe(**head), registry, "test")
        return build_model(resolved, {"news": TaskInfo("news", 0)}).eval()

    return make


class InMemoryDataset(DatasetSource):
    """A real `datasets` source over rows given in the test (for bad-data cases)."""

    name = "in_memory"
    config_class = DatasetConfig

    def __init__(self, rows: dict[str, list[Any]], config: DatasetConfig | None = None) -> None:
        super().__init__(config or DatasetConfig(test_size=0.5))
        self.rows = rows

    def load(self) -> datasets.DatasetDict:
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict(self.rows)})
