"""A learned-routing phase in a real (tiny) run: temperature, aux losses, routing analysis files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mtkit.api.errors import RecipeError
from mtkit.train.run import run_recipe
from tests.conftest import write_toml


def router_recipe(tiny_recipe: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    recipe = dict(tiny_recipe)
    recipe["run"] = {**recipe["run"], "output_dir": str(tmp_path / "run"), "checkpoint_every": 0}
    recipe["combiner"] = {"type": "router", "hidden_dim": 16}
    recipe["phases"] = [
        {"name": "adapters", "steps": 2, "train": ["adapters", "heads"], "lr": 5e-3, "evaluate": False},
        {
            "name": "router",
            "steps": 4,
            "train": ["combiner"],
            "routing": "learned",
            "batching": "mixed",
            "temperature": {"start": 2.0, "end": 0.5},
            "aux_losses": {"load_balance": 0.01, "entropy": 0.01, "efficiency": 0.01, "consistency": 0.01},
        },
    ]
    return recipe


def test_router_phase_logs_aux_losses_and_writes_routing_analysis(tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    path = write_toml(tmp_path / "router.toml", router_recipe(tiny_recipe, tmp_path))
    run = run_recipe(path)
    logs = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in logs if r["event"] == "train" and r["phase"] == "router"]
    assert train and {"aux/load_balance", "aux/entropy", "aux/efficiency", "aux/consistency"} <= set(train[-1])
    assert train[-1]["temperature"] == pytest.approx(0.5)
    routing = json.loads((run.path / "routing.json").read_text())
    assert set(routing["routing_accuracy"]) == {"sentiment", "topic"}
    assert sum(routing["load"].values()) == pytest.approx(1.0, abs=1e-4)
    for shares in routing["matrix"].values():
        assert sum(shares.values()) == pytest.approx(1.0)
    assert (run.path / "routing_heatmap.png").is_file()
    results = json.loads((run.path / "results.json").read_text())
    assert set(results["router"]) == {"learned", "oracle"}


def test_router_rejects_aux_loss_it_does_not_provide(tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    recipe = router_recipe(tiny_recipe, tmp_path)
    recipe["phases"][1]["aux_losses"] = {"load_balanse": 0.01}
    with pytest.raises(
        RecipeError,
        match=r"phases\.1\.aux_losses\.load_balanse: no combiner or adapter declares this auxiliary loss; did you mean 'load_balance'\? \(known: consistency, efficiency, entropy, expert_balance, load_balance, task_supervision, value_identity\)",
    ):
        run_recipe(write_toml(tmp_path / "bad.toml", recipe))
