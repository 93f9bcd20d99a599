"""Probes (extra evaluation sets of a task) and input views (training inputs as random spans)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from mtkit.data.probes import first_sentence
from mtkit.data.views import span_views
from mtkit.recipe.schema import ViewSection
from mtkit.train.run import run_recipe
from tests.conftest import write_toml
from tests.core.test_cli import mtkit


def test_first_sentence_cuts_at_the_first_sentence_end() -> None:
    assert first_sentence("Shares fell. Markets were calm! Why?") == "Shares fell."
    assert first_sentence("  no end here  ") == "no end here"
    assert first_sentence("U.S. output rose 3.5% in May. More follows.") == "U.S. output rose 3.5% in May."


def test_span_views_cut_a_share_of_examples_to_spans_and_keep_special_tokens() -> None:
    special = {101, 102}
    features = {"input_ids": [[101, *range(1, 41), 102], [101, 7, 8, 102]], "attention_mask": [[1] * 42, [1] * 4], "labels": [1, 0]}
    view = ViewSection(probability=1.0, min_tokens=5, max_tokens=5)
    cut = span_views(features, view, torch.Generator().manual_seed(0), special)
    first = cut["input_ids"][0]
    assert len(first) == 7 and first[0] == 101 and first[-1] == 102
    inner = first[1:-1]
    assert inner == list(range(inner[0], inner[0] + 5))  # one contiguous span of the original tokens
    assert cut["input_ids"][1] == [101, 7, 8, 102]  # shorter than the drawn length: whole
    assert cut["attention_mask"] == [[1] * 7, [1] * 4] and cut["labels"] == [1, 0]
    again = span_views(features, view, torch.Generator().manual_seed(0), special)
    assert again["input_ids"] == cut["input_ids"]  # the seed decides
    assert span_views(features, ViewSection(probability=0.0), torch.Generator().manual_seed(0), special)["input_ids"] == features["input_ids"]
    tagged = {"input_ids": [[101, 1, 2, 102]], "labels": [[0, 1, 1, 0]]}  # token-level labels: left whole
    assert span_views(tagged, view, torch.Generator().manual_seed(0), special)["input_ids"] == tagged["input_ids"]


def test_sentence_views_cut_to_whole_sentences() -> None:
    special, ends = {101, 102}, {9}  # 9 stands for '.'
    # three sentences: [1, 2, 9], [3, 4, 5, 9], [6, 7]
    features = {"input_ids": [[101, 1, 2, 9, 3, 4, 5, 9, 6, 7, 102], [101, 1, 2, 9, 102]], "labels": [1, 0]}
    view = ViewSection(probability=1.0, unit="sentences", max_sentences=1)
    seen = set()
    for seed in range(20):
        cut = span_views(features, view, torch.Generator().manual_seed(seed), special, ends)
        first = cut["input_ids"][0]
        assert first[0] == 101 and first[-1] == 102
        seen.add(tuple(first[1:-1]))
        assert cut["input_ids"][1] == [101, 1, 2, 9, 102]  # one sentence only: whole
    assert seen == {(1, 2, 9), (3, 4, 5, 9), (6, 7)}  # every sentence, and only whole ones
    two = ViewSection(probability=1.0, unit="sentences", max_sentences=2)
    runs = {tuple(span_views(features, two, torch.Generator().manual_seed(seed), special, ends)["input_ids"][0][1:-1]) for seed in range(40)}
    assert (1, 2, 9, 3, 4, 5, 9) in runs and (3, 4, 5, 9, 6, 7) in runs and (1, 2, 9, 3, 4, 5, 9, 6, 7) not in runs


def _router_recipe(tiny_recipe: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    recipe = dict(tiny_recipe)
    recipe["run"] = {**recipe["run"], "output_dir": str(tmp_path / "run"), "checkpoint_every": 0}
    recipe["combiner"] = {"type": "router", "hidden_dim": 16}
    recipe["tasks"]["topic"]["probes"] = {
        "first_sentence": {"transform": "first_sentence"},
        "headlines": {"dataset": {"type": "bbc_news", "text": "headline", "max_eval_examples": 10}},
    }
    recipe["phases"] = [
        {"name": "adapters", "steps": 3, "train": ["adapters", "heads"], "lr": 5e-3, "evaluate": False},
        {"name": "router", "steps": 3, "train": ["combiner"], "routing": "learned", "batching": "mixed",
         "views": {"probability": 0.5, "min_tokens": 4, "max_tokens": 12}},
    ]
    return recipe


def test_probes_are_scored_routed_reported_and_evaluated_again(tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    path = write_toml(tmp_path / "r.toml", _router_recipe(tiny_recipe, tmp_path))
    result = mtkit("run", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    probes = json.loads((run / "probes.json").read_text())
    assert set(probes) == {"learned", "oracle"} and set(probes["learned"]["topic"]) == {"first_sentence", "headlines"}
    routing = json.loads((run / "routing.json").read_text())
    assert set(routing["probes"]["routing_accuracy"]) == {"topic/first_sentence", "topic/headlines"}
    assert set(routing["routing_accuracy"]) == {"sentiment", "topic"}  # held-out routing stays apart from the probes
    assert "topic/first_sentence (probe)" in result.stderr and "routing accuracy" in result.stderr  # printed at the end
    assert "## Probes, end of run (learned routing)" in (run / "report.md").read_text()
    rows = [json.loads(line) for line in (run / "predictions" / "router" / "topic.first_sentence.jsonl").read_text().splitlines()]
    held_out = [json.loads(line) for line in (run / "predictions" / "router" / "topic.jsonl").read_text().splitlines()]
    assert len(rows) == len(held_out) == 24 and all(r["input"]["text"] for r in rows)
    assert all(h["input"]["text"].startswith(r["input"]["text"]) for r, h in zip(rows, held_out, strict=True))
    again = mtkit("eval", str(run), "--probe", "headlines", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["topic/headlines"] == pytest.approx(probes["learned"]["topic"]["headlines"])
    missing = mtkit("eval", str(run), "--probe", "nope", cwd=tmp_path)
    assert missing.returncode == 2 and "--probe 'nope': no task of this run declares it (probes: topic/first_sentence, topic/headlines)" in missing.stderr


def test_views_keep_a_resumed_run_identical(tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    """Views are drawn from (seed, phase, step): a run killed mid-phase and resumed equals an uninterrupted one."""
    recipe = _router_recipe(tiny_recipe, tmp_path)
    del recipe["tasks"]["topic"]["probes"]
    recipe["phases"][1]["steps"] = 4
    recipe["run"]["checkpoint_every"] = 2
    whole = run_recipe(write_toml(tmp_path / "whole.toml", recipe))
    results = json.loads((whole.path / "results.json").read_text())
    recipe["run"]["output_dir"] = str(tmp_path / "resumed")
    path = write_toml(tmp_path / "resumed.toml", recipe)
    from mtkit.rundir import checkpoint

    original = checkpoint.save_checkpoint
    calls = []

    def crash_after_first(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # the mid-phase checkpoint of the router phase
            raise KeyboardInterrupt
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checkpoint, "save_checkpoint", crash_after_first)
        with pytest.raises(KeyboardInterrupt):
            run_recipe(path)
    resumed = run_recipe(path, resume=True)
    assert json.loads((resumed.path / "results.json").read_text()) == results
    from safetensors.torch import load_file

    a, b = load_file(str(whole.path / "model.safetensors")), load_file(str(resumed.path / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
