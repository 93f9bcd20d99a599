"""End to end: recipes/router_quickstart.toml on the packaged MiniLM and two real corpora."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mtkit.train.run import run_recipe

RECIPE = Path(__file__).resolve().parents[3] / "recipes" / "router_quickstart.toml"


@pytest.mark.slow
def test_router_quickstart_routes_held_out_samples_to_their_own_adapter(tmp_path: Path) -> None:
    tic = time.perf_counter()
    run = run_recipe(RECIPE, [f"run.output_dir={tmp_path / 'run'}", "run.threads=2"])
    wall = time.perf_counter() - tic
    routing = json.loads((run.path / "routing.json").read_text())
    results = json.loads((run.path / "results.json").read_text())
    print(f"\nwall {wall:.0f} s; routing accuracy {routing['routing_accuracy']}; results {json.dumps(results['router'])}")
    # The router never sees task ids: it reads only the pooled input embeddings.
    assert min(routing["routing_accuracy"].values()) >= 0.95, routing
    assert (run.path / "routing_heatmap.png").stat().st_size > 1000
    assert set(results["router"]) == {"learned", "oracle"}  # learned routing, then oracle for comparison
    for task in ("sentiment", "topic"):
        learned, oracle = results["router"]["learned"][task], results["router"]["oracle"][task]
        assert learned["accuracy"] >= oracle["accuracy"] - 0.05, (task, learned, oracle)
    assert "## Routing" in (run.path / "report.md").read_text()
