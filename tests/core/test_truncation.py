"""Inputs longer than max_length are counted per task and split, and a run warns when more than 5% are cut."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from mtkit.train.run import run_recipe
from tests.conftest import write_toml


class Notices:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def notice(self, message: str) -> None:
        self.messages.append(message)

    def __getattr__(self, name: str) -> Any:  # the other progress callbacks: nothing to show
        return lambda *args, **kwargs: None


def test_cut_inputs_are_counted_reported_and_warned_about(tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    recipe = copy.deepcopy(tiny_recipe)
    recipe["run"] |= {"output_dir": str(tmp_path / "run"), "checkpoint_every": 0}
    recipe["tasks"]["topic"]["max_length"] = 16  # every BBC article is longer
    recipe["tasks"]["sentiment"]["max_length"] = 128  # no review is
    recipe["phases"] = [{"name": "p", "steps": 1, "train": ["heads"]}]
    notices = Notices()
    run = run_recipe(write_toml(tmp_path / "r.toml", recipe), callbacks=notices).path
    tasks = json.loads((run / "data.json").read_text())["tasks"]
    assert tasks["topic"]["cut"] == {"train": 64, "test": 24}
    assert tasks["sentiment"]["cut"] == {"train": 0, "test": 0}
    warnings = [m for m in notices.messages if "longer than max_length" in m]
    assert warnings == [
        "task 'topic': 64 of 64 train inputs (100%) are longer than max_length 16 and were cut; raise tasks.topic.max_length "
        "(or run.max_length) if that loses what matters",
        "task 'topic': 24 of 24 test inputs (100%) are longer than max_length 16 and were cut; raise tasks.topic.max_length "
        "(or run.max_length) if that loses what matters",
    ]
    report = (run / "report.md").read_text()
    assert "| topic | bbc_news | 64 | 24 | 64 train, 24 test |" in report and "Warning: task 'topic': 64 of 64 train inputs" in report
