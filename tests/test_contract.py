"""Every registered component of every kind but adapter passes its kind's contract suite.

The suites are the ones plugin authors run (mtkit.testing.<kind>); components whose defaults
are not enough to build something tiny get their params here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mtkit import load_registry
from mtkit.testing._tiny import TINY_BERT, TINY_LLAMA
from mtkit.testing.backbone import check_backbone
from mtkit.testing.balancer import check_balancer
from mtkit.testing.combiner import check_combiner
from mtkit.testing.dataset import check_dataset
from mtkit.testing.head import check_head
from mtkit.testing.metric import check_metric
from mtkit.testing.scheduler import check_scheduler

CHECKS = {
    "backbone": check_backbone,
    "combiner": check_combiner,
    "head": check_head,
    "scheduler": check_scheduler,
    "dataset": check_dataset,
    "metric": check_metric,
    "balancer": check_balancer,
}


def _params(table: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in table.items() if k != "type"}


FIXTURES = Path(__file__).resolve().parent / "fixtures"
REVIEWS = {"rename": {"review": "text", "stars": "label"}}

MINIMAL_PARAMS: dict[tuple[str, str], dict[str, Any]] = {
    ("backbone", "hf_encoder"): _params(TINY_BERT),
    ("backbone", "hf_causal_lm"): _params(TINY_LLAMA),
    ("backbone", "scratch_transformer"): {"num_layers": 2, "num_heads": 2, "hidden_size": 32},
    ("dataset", "rotten_tomatoes"): {"max_train_examples": 16},
    ("dataset", "bbc_news"): {"max_train_examples": 16},
    ("dataset", "bbc_headlines"): {"max_train_examples": 16},
    ("dataset", "csv"): {"data_files": str(FIXTURES / "reviews.csv"), **REVIEWS},
    ("dataset", "json"): {"data_files": str(FIXTURES / "reviews.jsonl"), **REVIEWS},
    ("dataset", "parquet"): {"data_files": str(FIXTURES / "reviews.parquet"), **REVIEWS},
    ("dataset", "hf"): {"path": "csv", "data_files": str(FIXTURES / "reviews.csv"), **REVIEWS},
}
"""Params where the defaults would load a full-size model or a whole corpus."""

TAGS = [["B-PER", "I-PER", "O"], ["O", "B-LOC"], ["O", "O", "B-ORG", "I-ORG"], ["B-LOC", "O"]]
OPTIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("head", "lm"): {
        "backbone": "llama",
        "label_names": None,
        "examples": {"text": ["one", "two plus two", "three", "hello there"], "target": ["1", "4", "3", "hi"]},
    },
    ("head", "multiple_choice"): {
        "label_names": None,
        "examples": {
            "question": ["sky colour?", "two plus two?", "capital of France?"],
            "choices": [["blue", "green"], ["three", "four", "five"], ["Paris", "Rome"]],
            "label": [0, 1, 0],
        },
        "new_input": "sky colour? | blue | green",
    },
    ("head", "span_qa"): {
        "label_names": None,
        "examples": {
            "question": ["Who wrote it?", "Where is it?"],
            "context": ["The book was written by Ada Lane in 1990.", "The lake is in Norway, near the coast."],
            "answer": ["Ada Lane", "Norway"],
        },
        "new_input": "Who wrote it? | It was written by Ada Lane.",
    },
    ("head", "token_classification"): {
        "label_names": ("O", "B-PER", "I-PER"),
        "examples": {"tokens": [["Ada", "Lane", "wrote"], ["it", "rained"]], "tags": [[1, 2, 0], [0, 0]]},
    },
    ("metric", "bleu"): {"references": ["the cat sat on the mat", "a dog ran far", "rain fell all day"], "maximum": 100.0},
    ("metric", "chrf"): {"references": ["the cat sat on the mat", "a dog ran far", "rain fell all day"], "maximum": 100.0},
    ("metric", "rouge"): {"references": ["the cat sat on the mat", "a dog ran far", "rain fell all day"]},
    ("metric", "token_accuracy"): {"references": TAGS, "wrong": [["O"] * len(t) for t in TAGS]},
    ("metric", "entity_f1"): {"references": TAGS, "wrong": [["O"] * len(t) for t in TAGS]},
}
"""Kind-specific check options (head examples, metric references) for components that need them."""

SKIPPED = {
    ("metric", "pass_at_k"): "its predictions (code) and references (tests) differ in form; tests/plugins/metrics covers it",
}

ENTRIES = [(e.kind, e.name) for e in load_registry().components() if e.kind in CHECKS]


@pytest.mark.parametrize(("kind", "name"), ENTRIES, ids=[f"{k}-{n}" for k, n in ENTRIES])
def test_contract_builtin_component_passes_its_kind_suite(kind: str, name: str) -> None:
    if (kind, name) in SKIPPED:
        pytest.skip(SKIPPED[(kind, name)])
    cls = load_registry().component_class(kind, name)
    CHECKS[kind](cls, MINIMAL_PARAMS.get((kind, name), {}), **OPTIONS.get((kind, name), {}))


def test_contract_covers_every_kind_but_adapter() -> None:
    assert {k for k, _ in ENTRIES} == set(CHECKS)
