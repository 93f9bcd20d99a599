"""`mtkit ablate` and `mtkit predict`/`eval` on finished tiny runs, through the real CLI."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import pytest

from mtkit import MtkitError
from mtkit.sweep.ablate import parse_swap, parse_variant
from tests.conftest import write_toml
from tests.core.test_cli import mtkit


def test_ablate_parses_swaps_and_named_variants() -> None:
    assert [v.name for v in parse_swap("combiner.type=oracle, uniform")] == ["oracle", "uniform"]
    assert parse_swap("a.b=1,2")[1].overrides == ("a.b=2",)
    variant = parse_variant("single: tasks.a.adapter=x; tasks.b.adapter=x")
    assert variant.name == "single" and variant.overrides == ("tasks.a.adapter=x", "tasks.b.adapter=x")
    with pytest.raises(MtkitError, match="must look like"):
        parse_variant("no overrides here")


def test_ablate_cli_runs_variants_at_seeds_and_writes_the_comparison(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    recipe = copy.deepcopy(tiny_recipe)
    recipe["phases"] = [{"name": "train", "steps": 4, "train": ["adapters", "heads"], "lr": 5e-3}]
    recipe["scheduler"] = {"type": "round_robin"}  # each task gets steps, so every adapter matrix gets gradient
    for task in recipe["tasks"].values():
        task["dataset"].update(max_train_examples=32, max_eval_examples=16)
    path = write_toml(tmp_path / "tiny.toml", recipe)
    result = mtkit(
        "ablate", str(path), "--swap", "adapters.topic.rank=2,4", "--variant", "shared: tasks.topic.adapter=sentiment",
        "--seeds", "0-1", "--reference", "4", "--threads", "1", "--output-dir", str(tmp_path / "abl"), cwd=tmp_path, env={"COLUMNS": "80"},
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "abl" / "comparison.csv").open()))
    assert [r["variant"] for r in rows] == ["2", "4", "shared"]
    for column in ("topic/accuracy", "topic/accuracy_se", "topic/accuracy_diff", "topic/accuracy_ci_low", "topic/accuracy_ge_ref"):
        assert column in rows[0]
    params = {r["variant"]: int(r["trained_params"]) for r in rows}
    # rank 4 on two 32-wide sites x 2 layers: the topic adapter grows by 2*2*2*32*2 = 512 parameters
    assert params["4"] - params["2"] == 512
    # the shared variant routes both tasks to one adapter: the other gets no gradient, so it is not counted
    assert params["shared"] < params["4"]
    # the difference to the reference is paired by seed: the mean of the per-seed differences in runs.csv
    runs = list(csv.DictReader((tmp_path / "abl" / "runs.csv").open()))
    score = {(r["variant"], r["seed"]): float(r["sentiment/accuracy"]) for r in runs}
    by_seed = [score[("2", seed)] - score[("4", seed)] for seed in ("0", "1")]
    assert float(rows[0]["sentiment/accuracy_diff"]) == pytest.approx(sum(by_seed) / 2)
    assert rows[0]["sentiment/accuracy_ge_ref"] == str(sum(d >= 0 for d in by_seed)) and rows[1]["sentiment/accuracy_diff"] == ""
    # the printed tables fit 80 columns, whole: no cell cut short, no header broken inside a word
    table_lines = [line for line in result.stdout.splitlines() if line[:1] in "┏┃┡│└" or "ablation of" in line]
    assert len(table_lines) > 20 and max(len(line) for line in table_lines) <= 80 and "\u2026" not in result.stdout
    for header in ("variant", "status", "trained", "params", "seconds", "mean ± s.e.", "diff", "95% CI", "≥ ref"):
        assert header in result.stdout, header
    assert f"{params['shared']:,}" in result.stdout and " ± " in result.stdout
    markdown = (tmp_path / "abl" / "comparison.md").read_text()
    assert "| variant | status | sentiment/accuracy |" in markdown and f"| {params['4']:,} |" in markdown
    assert "Paired differences to `4`" in markdown and "| shared | " in markdown
    assert (tmp_path / "abl" / "comparison.png").stat().st_size > 1000
    assert sorted(p.name for p in (tmp_path / "abl" / "2").iterdir() if not p.name.startswith(".")) == ["seed-0", "seed-1"]
    bad = mtkit("ablate", str(path), "--swap", "adapters.topic.rank=0,4", cwd=tmp_path)
    assert bad.returncode == 2 and "variant '0'" in bad.stderr and "adapters.topic.rank" in bad.stderr


def test_ablate_tables_fit_an_80_column_terminal() -> None:
    """Long variant names and wide scores on a real 80-column terminal: headers whole, nothing past column 80."""
    import io

    from rich.console import Console

    from mtkit.cli.app import ablation_tables
    from mtkit.sweep.comparison import Comparison, VariantRow
    from mtkit.sweep.stats import paired_difference, summarize

    reference = [0.9012, 0.8876, 0.9123]
    rows = []
    for i, name in enumerate(["router", "fusion_attention_per_task_own_init", "single_lora_everywhere"]):
        scores = [s - 0.0123 * i for s in reference]
        row = VariantRow(name, 3, 3, trained_params=1_234_567, seconds=1234.5, cost=12.3456, cost_flops=1.0, shared_phases=["adapters", "router"])
        row.scores = {m: summarize(scores) for m in ("sentiment/accuracy", "sentiment/macro_f1")}  # type: ignore[misc]
        row.diffs = {m: paired_difference(scores, reference) for m in row.scores} if i else {}  # type: ignore[misc]
        rows.append(row)
    comparison = Comparison(Path("."), "router", [0, 1, 2], ["sentiment/accuracy", "sentiment/macro_f1"], rows, [])
    console = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None)
    for table in ablation_tables(comparison, "recipes/dynamo.toml"):
        console.print(table)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert max(len(line) for line in text.splitlines()) <= 80
    for header in ("variant", "status", "trained", "params", "infer", "time", "FLOPs", "seconds", "shared", "phases", "mean ± s.e.", "95% CI", "≥ ref"):
        assert header in text, header
    assert "-0.0246" in text and "0.9004 ± 0.0071" in text and "12.35x" in text and "1.00x" in text


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
    scores = mtkit("eval", str(tmp_path / "run"), "--task", "sentiment", "--json")
    assert scores.returncode == 0, scores.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert json.loads(scores.stdout)["sentiment"] == pytest.approx(results["heads"]["oracle"]["sentiment"])
    table = mtkit("eval", str(tmp_path / "run"), "--task", "sentiment")  # a table for people
    assert table.returncode == 0 and "accuracy" in table.stdout and "sentiment" in table.stdout and "{" not in table.stdout
    assert "topic/train" not in table.stderr  # only the split it scores is encoded
    missing = mtkit("predict", str(tmp_path / "nope"), "x")
    assert missing.returncode == 2 and "not a run directory" in missing.stderr
