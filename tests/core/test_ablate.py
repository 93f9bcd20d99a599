"""`mtkit ablate` and `mtkit predict`/`eval` on finished tiny runs, through the real CLI."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import pytest

from mtkit import MtkitError
from mtkit.ablate import parse_swap, parse_variant
from tests.conftest import write_toml
from tests.core.test_cli import mtkit


def test_ablate_parses_swaps_and_named_variants() -> None:
    assert [v.name for v in parse_swap("combiner.type=oracle, uniform")] == ["oracle", "uniform"]
    assert parse_swap("a.b=1,2")[1].overrides == ("a.b=2",)
    variant = parse_variant("single: tasks.a.adapter=x; tasks.b.adapter=x")
    assert variant.name == "single" and variant.overrides == ("tasks.a.adapter=x", "tasks.b.adapter=x")
    with pytest.raises(MtkitError, match="must look like"):
        parse_variant("no overrides here")


def test_ablate_cli_runs_variants_and_writes_comparison(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    recipe = copy.deepcopy(tiny_recipe)
    recipe["phases"] = [{"name": "train", "steps": 6, "train": ["adapters", "heads"], "lr": 5e-3}]
    recipe["scheduler"] = {"type": "round_robin"}  # each task gets steps, so every adapter matrix gets gradient
    path = write_toml(tmp_path / "tiny.toml", recipe)
    result = mtkit(
        "ablate", str(path), "--swap", "adapters.topic.rank=2,4", "--variant",
        "shared: tasks.topic.adapter=sentiment", "--output-dir", str(tmp_path / "abl"), cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "abl" / "comparison.csv").open()))
    assert [r["variant"] for r in rows] == ["2", "4", "shared"]
    assert {"sentiment/accuracy", "topic/accuracy", "trained_params", "seconds"} <= set(rows[0])
    params = {r["variant"]: int(r["trained_params"]) for r in rows}
    # rank 4 on two 32-wide sites x 2 layers: the topic adapter grows by 2*2*2*32*2 = 512 parameters
    assert params["4"] - params["2"] == 512
    # the shared variant routes both tasks to one adapter: the other gets no gradient, so it is not counted
    assert params["shared"] < params["4"]
    # the printed table (stdout is a pipe here) is whole: no cell cut short with an ellipsis
    assert "\u2026" not in result.stdout and f"{params['shared']:,}" in result.stdout
    markdown = (tmp_path / "abl" / "comparison.md").read_text()
    assert markdown.startswith("| variant |") and f"| {params['4']:,} |" in markdown
    assert (tmp_path / "abl" / "comparison.png").stat().st_size > 1000
    bad = mtkit("ablate", str(path), "--swap", "adapters.topic.rank=0,4", cwd=tmp_path)
    assert bad.returncode == 2 and "variant '0'" in bad.stderr and "adapters.topic.rank" in bad.stderr


def test_predict_and_eval_from_run_directory(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    recipe = copy.deepcopy(tiny_recipe)
    recipe["run"]["output_dir"] = str(tmp_path / "run")
    path = write_toml(tmp_path / "tiny.toml", recipe)
    assert mtkit("run", str(path), cwd=tmp_path).returncode == 0
    predicted = mtkit("predict", str(tmp_path / "run"), "a gripping, funny film", "shares fell on monday", "--json")
    assert predicted.returncode == 0, predicted.stderr
    items = json.loads(predicted.stdout)
    assert [i["input"] for i in items] == ["a gripping, funny film", "shares fell on monday"]
    assert items[0]["predictions"]["sentiment"]["prediction"] in {"rotten", "fresh"}
    assert items[1]["predictions"]["topic"]["prediction"] in {"business", "entertainment", "politics", "sport", "tech"}
    one = mtkit("predict", str(tmp_path / "run"), "x", "--task", "topic", "--json")
    assert list(json.loads(one.stdout)[0]["predictions"]) == ["topic"]
    scores = mtkit("eval", str(tmp_path / "run"), "--task", "sentiment")
    assert scores.returncode == 0, scores.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert json.loads(scores.stdout)["sentiment"] == pytest.approx(results["heads"]["oracle"]["sentiment"])
    missing = mtkit("predict", str(tmp_path / "nope"), "x")
    assert missing.returncode == 2 and "not a run directory" in missing.stderr
