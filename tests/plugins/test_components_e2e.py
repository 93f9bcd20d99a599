"""End to end on the packaged model and corpora: each task type learns (held-out score vs an untrained model or the majority class)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mtkit import Registry
from mtkit.train.run import run_recipe
from tests.conftest import ROOT, write_toml
from tests.plugins.components_support import FIXTURES

pytestmark = pytest.mark.slow


def _scores(run_dir: Path, phase: str) -> dict[str, dict[str, float]]:
    return json.loads((run_dir / "results.json").read_text())[phase]["oracle"]


def _train_and_untrained(tmp_path: Path, registry: Registry, recipe: dict[str, Any]) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Scores after training, and of the same model after one step at a negligible learning rate."""
    recipe["run"]["output_dir"] = str(tmp_path / "trained")
    trained = _scores(run_recipe(write_toml(tmp_path / "trained.toml", recipe), registry=registry).path, recipe["phases"][-1]["name"])
    recipe["run"]["output_dir"] = str(tmp_path / "untrained")
    recipe["phases"] = [recipe["phases"][-1] | {"steps": 1, "lr": 1e-12}]
    untrained = _scores(run_recipe(write_toml(tmp_path / "untrained.toml", recipe), registry=registry).path, recipe["phases"][-1]["name"])
    return trained, untrained


def _minilm_recipe(task: dict[str, Any], steps: int, lr: float) -> dict[str, Any]:
    return {
        "run": {"name": "e2e", "seed": 0, "batch_size": 8, "eval_batch_size": 32, "max_length": 64, "checkpoint_every": 0, "log_every": 10},
        "backbone": {"type": "hf_encoder", "model": "all-MiniLM-L6-v2"},
        "adapters": {"task": {"type": "lora", "rank": 8, "alpha": 16, "target_modules": ["query", "value"]}},
        "tasks": {"task": task},
        "phases": [{"name": "train", "steps": steps, "train": ["adapters", "heads"], "lr": lr, "warmup_ratio": 0.1}],
    }


def test_sentence_encoder_from_scratch_beats_majority_class(tmp_path: Path, registry: Registry) -> None:
    # The shipped recipe as is: measured (seeded) 0.647 subject-group and 0.906 topic accuracy, 272 CPU-seconds.
    run_dir = run_recipe(ROOT / "recipes" / "sentence_encoder.toml", [f"run.output_dir={tmp_path / 'run'}"], registry=registry).path
    scores = _scores(run_dir, "joint")
    data = json.loads((run_dir / "data.json").read_text())
    assert data["tasks"]["subject"]["test"] == 1000 and data["tasks"]["topic"]["test"] == 223
    # Majority-class accuracy on these held-out splits: BBC 'sport' 23%, MMLU 'humanities' 33.5% of all questions.
    assert scores["topic"]["accuracy"] > 0.23 + 0.25, scores
    assert scores["subject"]["accuracy"] > 0.335 + 0.05, scores


def test_multiple_choice_headline_choice_learns_above_untrained(tmp_path: Path, registry: Registry) -> None:
    # recipes/headline_choice.toml as shipped: pick a BBC article's headline among four of the same topic.
    from mtkit.recipe.file import read_recipe_file

    recipe = read_recipe_file(ROOT / "recipes" / "headline_choice.toml")
    trained, untrained = _train_and_untrained(tmp_path, registry, recipe)
    # Chance is 0.25; MEASURED_MC
    assert trained["headline"]["accuracy"] >= 0.7 and trained["headline"]["accuracy"] > untrained["headline"]["accuracy"] + 0.3, (trained, untrained)


def test_span_qa_learns_on_fixture(tmp_path: Path, registry: Registry) -> None:
    task = {
        "dataset": {"type": "json", "data_files": str(FIXTURES / "span_qa.jsonl"), "test_size": 0.25, "split_seed": 1},
        "head": {"type": "span_qa"},
        "metrics": ["accuracy"],  # exact string match of the extracted answer with the gold text
    }
    trained, untrained = _train_and_untrained(tmp_path, registry, _minilm_recipe(task, steps=120, lr=3e-3))
    # Measured: exact match 0.90 (run seed 0) and 0.925 (seed 2) trained vs 0.025 untrained on 40 held-out questions;
    # at 60 steps seeds 0-2 gave 0.45, 0.70 and 0.225 (six passes over 160 questions are needed, three are not).
    assert trained["task"]["accuracy"] >= 0.75 and trained["task"]["accuracy"] > untrained["task"]["accuracy"] + 0.4, (trained, untrained)


def test_token_classification_learns_on_fixture(tmp_path: Path, registry: Registry) -> None:
    task = {
        "dataset": {"type": "json", "data_files": str(FIXTURES / "token_classification.jsonl"), "label_field": "tags", "test_size": 0.25, "split_seed": 1},
        "head": {"type": "token_classification"},
        "metrics": ["token_accuracy", "entity_f1"],
    }
    trained, untrained = _train_and_untrained(tmp_path, registry, _minilm_recipe(task, steps=40, lr=3e-3))
    # Measured (seeded): token accuracy 0.91, entity F1 0.67 after training; 0.04 and 0.05 untrained.
    assert trained["task"]["token_accuracy"] >= 0.8 and trained["task"]["entity_f1"] >= 0.5, (trained, untrained)
    assert trained["task"]["entity_f1"] > untrained["task"]["entity_f1"] + 0.4
