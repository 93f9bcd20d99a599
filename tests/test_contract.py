"""Every registered component of every kind but adapter passes its kind's contract suite.

The suites are the ones plugin authors run (mtkit.testing.<kind>); components whose defaults
are not enough to build something tiny get their params here.
"""

from __future__ import annotations

from typing import Any

import pytest

from mtkit import load_registry
from mtkit.testing._tiny import TINY_BERT, TINY_LLAMA
from mtkit.testing.backbone import check_backbone
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
}


def _params(table: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in table.items() if k != "type"}


MINIMAL_PARAMS: dict[tuple[str, str], dict[str, Any]] = {
    ("backbone", "hf_encoder"): _params(TINY_BERT),
    ("backbone", "hf_causal_lm"): _params(TINY_LLAMA),
    ("dataset", "rotten_tomatoes"): {"max_train_examples": 16},
    ("dataset", "bbc_news"): {"max_train_examples": 16},
}
"""Params where the defaults would load a full-size model or a whole corpus."""

OPTIONS: dict[tuple[str, str], dict[str, Any]] = {}
"""Kind-specific check options (head examples, metric references) for components that need them."""

ENTRIES = [(e.kind, e.name) for e in load_registry().components() if e.kind in CHECKS]


@pytest.mark.parametrize(("kind", "name"), ENTRIES, ids=[f"{k}-{n}" for k, n in ENTRIES])
def test_contract_builtin_component_passes_its_kind_suite(kind: str, name: str) -> None:
    cls = load_registry().component_class(kind, name)
    CHECKS[kind](cls, MINIMAL_PARAMS.get((kind, name), {}), **OPTIONS.get((kind, name), {}))


def test_contract_covers_every_kind_but_adapter() -> None:
    assert {k for k, _ in ENTRIES} == set(CHECKS)
