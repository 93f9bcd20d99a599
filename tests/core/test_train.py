"""Training end to end on a tiny random BERT and small samples of the real corpora."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from mtkit_schedulers.config import ProportionalSchedulerConfig, RoundRobinSchedulerConfig
from mtkit_schedulers.schedulers import ProportionalScheduler, RoundRobinScheduler
from safetensors.torch import load_file

from mtkit.data.tasks import plan_batches
from mtkit.recipe.schema import PhaseSection
from mtkit.rundir.checkpoint import load_latest, save_checkpoint
from mtkit.train.run import run_recipe
from mtkit.train.trainer import lr_lambda
from tests.conftest import ROOT, kill_and_resume, write_toml


def _run(tmp_path: Path, recipe: dict[str, Any], name: str, **kwargs: Any) -> Path:
    recipe = copy.deepcopy(recipe)
    recipe["run"]["output_dir"] = str(tmp_path / name)
    path = write_toml(tmp_path / f"{name}.toml", recipe)
    return run_recipe(path, **kwargs).path


def test_train_tiny_run_writes_complete_run_directory(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    out = _run(tmp_path, tiny_recipe, "run")
    for name in ("recipe.json", "data.json", "tasks.json", "metrics.jsonl", "results.json", "model.safetensors", "report.md", "training_curves.png"):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())
    data = json.loads((out / "data.json").read_text())
    assert data["tasks"]["sentiment"]["train"] == 64 and data["tasks"]["sentiment"]["test"] == 24
    assert data["tasks"]["topic"]["available"] == {"train": 2002, "test": 223}
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"adapters", "heads"}
    assert set(results["heads"]["oracle"]) == {"sentiment", "topic"}
    assert 0.0 <= results["heads"]["oracle"]["sentiment"]["accuracy"] <= 1.0
    weights = load_file(str(out / "model.safetensors"))
    assert weights and not any(k.startswith("backbone.") for k in weights)  # the frozen backbone is not copied
    assert any(k.startswith("adapters.topic.lora_b") for k in weights)
    train = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert [r["global_step"] for r in train] == [2, 4, 5, 7, 9]
    report = (out / "report.md").read_text()
    assert "| sentiment | rotten_tomatoes | 64 | 24 |" in report and "## Phase `heads` (oracle routing)" in report


def test_train_same_seed_gives_identical_runs(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    first = load_file(str(_run(tmp_path, tiny_recipe, "a") / "model.safetensors"))
    second = load_file(str(_run(tmp_path, tiny_recipe, "b") / "model.safetensors"))
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


class _Crash(Exception):
    pass


class _CrashAt:
    """Callbacks that crash the run at a given step of a given phase (like a kill mid-run)."""

    def __init__(self, phase: str, step: int) -> None:
        self.phase, self.step, self.current = phase, step, ""

    def phase_started(self, name: str, steps: int, start: int) -> None:
        self.current = name

    def step_done(self, step: int, logs: Mapping[str, float]) -> None:
        if self.current == self.phase and step == self.step:
            raise _Crash

    def evaluated(self, phase: str, routing: str, scores: Mapping[str, Mapping[str, float]], intervals: object) -> None:
        pass


@pytest.mark.parametrize(("phase", "step"), [("adapters", 4), ("heads", 3)])
def test_train_resume_after_crash_matches_uninterrupted_run(tmp_path: Path, tiny_recipe: dict[str, Any], phase: str, step: int) -> None:
    reference = _run(tmp_path, tiny_recipe, "reference")
    with pytest.raises(_Crash):
        _run(tmp_path, tiny_recipe, "crashed", callbacks=_CrashAt(phase, step))
    assert not (tmp_path / "crashed" / "results.json").exists()
    resumed = _run(tmp_path, tiny_recipe, "crashed", resume=True)
    assert json.loads((resumed / "results.json").read_text()) == json.loads((reference / "results.json").read_text())
    a, b = load_file(str(reference / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["global_step"] for line in (resumed / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert steps == sorted(set(steps)), "a resumed run logs each step once"


def test_train_existing_run_directory_needs_resume_or_overwrite(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    from mtkit import MtkitError

    _run(tmp_path, tiny_recipe, "once")
    with pytest.raises(MtkitError, match="run directory already exists; pass --resume"):
        _run(tmp_path, tiny_recipe, "once")
    # --resume without a checkpoint starts from step 0: tests/core/test_run_dir_guards.py


def test_train_killed_cli_run_resumes_to_the_same_result(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    """A real SIGKILL of `mtkit run` mid-phase, then `mtkit run --resume`."""
    recipe = copy.deepcopy(tiny_recipe)
    recipe["phases"][0]["steps"] = 150
    recipe["run"]["checkpoint_every"] = 10
    reference = _run(tmp_path, recipe, "reference")
    recipe["run"]["output_dir"] = str(tmp_path / "killed")
    kill_and_resume(write_toml(tmp_path / "killed.toml", recipe), tmp_path / "killed")
    assert json.loads((tmp_path / "killed" / "results.json").read_text()) == json.loads((reference / "results.json").read_text())


def test_checkpoint_interrupted_write_leaves_last_checkpoint_intact(tmp_path: Path) -> None:
    state = {"w": torch.arange(4.0)}
    save_checkpoint(tmp_path, 10, state, None, {"phase": 0, "step": 10, "global_step": 10, "results": {}})
    # A crash while writing step 20: its temporary folder exists, half written, and was never renamed.
    partial = tmp_path / "checkpoints" / ".step-0000020.tmp"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\x00\x01truncated")
    (tmp_path / "checkpoints" / "latest.tmp").write_text("step-0000020\n")
    found = load_latest(tmp_path)
    assert found is not None and found[1]["step"] == 10
    assert torch.equal(load_file(str(found[0] / "model.safetensors"))["w"], state["w"])
    # The next successful checkpoint replaces the debris and older checkpoints are pruned to two.
    for step in (20, 30, 40):
        save_checkpoint(tmp_path, step, state, None, {"phase": 0, "step": step, "global_step": step, "results": {}})
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == ["step-0000030", "step-0000040"]
    assert load_latest(tmp_path)[1]["step"] == 40  # type: ignore[index]


def test_train_learning_rate_warms_up_then_decays() -> None:
    phase = PhaseSection(name="p", steps=100, train=["heads"], warmup_ratio=0.1, lr_schedule="linear")
    scale = lr_lambda(phase)
    assert scale(0) == pytest.approx(0.1) and scale(9) == pytest.approx(1.0)
    assert scale(55) == pytest.approx(0.5) and scale(99) == pytest.approx(1 / 90)
    cosine = lr_lambda(PhaseSection(name="p", steps=10, train=["heads"], warmup_ratio=0.0, lr_schedule="cosine"))
    assert cosine(0) == pytest.approx(1.0) and cosine(5) == pytest.approx(0.5)


def test_train_temperature_anneals_exponentially() -> None:
    schedule = PhaseSection(name="p", steps=11, train=["combiner"], temperature={"start": 4.0, "end": 1.0}).temperature
    assert schedule is not None
    assert schedule.at(0, 11) == pytest.approx(4.0)
    assert schedule.at(5, 11) == pytest.approx(2.0)
    assert schedule.at(10, 11) == pytest.approx(1.0)


def test_plan_batches_is_deterministic_and_follows_the_scheduler() -> None:
    sizes = [300, 100]
    scheduler = ProportionalScheduler(ProportionalSchedulerConfig(), task_sizes=sizes)
    plan = plan_batches(scheduler, sizes, steps=400, batch_size=8, mixed=False, seed=3, phase=0)
    again = plan_batches(scheduler, sizes, steps=400, batch_size=8, mixed=False, seed=3, phase=0)
    assert plan == again
    first_task = sum(1 for step in plan.steps if step[0][0] == 0) / 400
    assert 0.68 < first_task < 0.82  # proportional: 0.75
    mixed = plan_batches(scheduler, sizes, steps=50, batch_size=8, mixed=True, seed=3, phase=1)
    assert all(sum(len(rows) for _, rows in step) == 8 for step in mixed.steps)
    # Each task's stream visits every example once per epoch.
    rr = RoundRobinScheduler(RoundRobinSchedulerConfig(), task_sizes=[16, 16])
    epoch = plan_batches(rr, [16, 16], steps=4, batch_size=8, mixed=False, seed=0, phase=0)
    seen = [row for step in epoch.steps for task, rows in step if task == 0 for row in rows]
    assert sorted(seen) == list(range(16))


@pytest.mark.slow
def test_train_accelerate_launch_two_processes(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    """`accelerate launch -m mtkit run` works (on a CPU Accelerate's launcher starts one process; tests/core/test_hardware.py
    runs two processes over gloo with torchrun) and writes one run directory."""
    recipe = copy.deepcopy(tiny_recipe)
    recipe["run"]["output_dir"] = str(tmp_path / "ddp")
    path = write_toml(tmp_path / "ddp.toml", recipe)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "mtkit", "run", str(path)]
    result = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert set(results["heads"]["oracle"]) == {"sentiment", "topic"}
    steps = [json.loads(line)["global_step"] for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert steps == sorted(set(steps)), "only the main process logs"


def _keep_best_recipe(tiny_recipe: dict[str, Any], mode: str = "mean") -> dict[str, Any]:
    """The tiny recipe with validation splits and a heads phase that scores them and keeps the best weights.

    The heads phase's learning rate is far too high and constant, so validation scores jump around
    (mean accuracy 0.3958, 0.4375, 0.2917, 0.4167 at steps 0, 2, 4, 6) and keep_best has something to undo.
    """
    recipe = copy.deepcopy(tiny_recipe)
    for task in recipe["tasks"].values():
        task["dataset"]["validation_size"] = 0.2
    recipe["phases"][1] |= {"steps": 6, "eval_every": 2, "keep_best": mode, "lr": 0.3, "warmup_ratio": 0.0, "lr_schedule": "constant"}
    return recipe


def _records(out: Path, event: str) -> list[dict[str, Any]]:
    """A run's log records of one event, without their wall-clock times."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time"} for r in records if r["event"] == event]


def _eval_cli(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mtkit", "eval", str(out), "--json", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)


def test_train_keep_best_mean_restores_the_best_validation_weights(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    out = _run(tmp_path, _keep_best_recipe(tiny_recipe), "best")
    data = json.loads((out / "data.json").read_text())["tasks"]["topic"]
    assert data["validation"] == 24 and data["available"]["train"] == 2002 - 401  # 20% of the 2,002 set aside, capped at 24
    checks = _records(out, "validation")
    assert [(r["phase"], r["step"]) for r in checks] == [("heads", s) for s in (0, 2, 4, 6)]
    scores = [r["score"] for r in checks]
    (record,) = _records(out, "keep_best")
    kept = record["kept"]["mean"]
    assert kept == {"step": checks[scores.index(max(scores))]["step"], "score": max(scores)}  # the first of equal bests
    assert kept["step"] < 6 and kept["score"] != scores[-1], "the last step should not be the best here (else this shows nothing)"
    # The saved model is the kept one: re-scoring the validation splits gives the kept score, not the last step's.
    rescored = json.loads(_eval_cli(out, "--split", "validation").stdout)
    assert (rescored["sentiment"]["accuracy"] + rescored["topic"]["accuracy"]) / 2 == pytest.approx(kept["score"], abs=1e-9)
    wrong = _eval_cli(out, "--split", "train")
    assert wrong.returncode == 2 and "--split 'train': use test or validation" in wrong.stderr and "Traceback" not in wrong.stderr
    report = (out / "report.md").read_text()
    assert f"Kept the weights of step {kept['step']}" in report and "| topic | bbc_news | 64 | 24 | 24 |" in report


@pytest.mark.parametrize("train", [["heads"], ["adapters", "heads"]], ids=["heads", "adapters_and_heads"])
def test_train_keep_best_per_task_takes_each_task_from_its_own_best_check(tmp_path: Path, tiny_recipe: dict[str, Any], train: list[str]) -> None:
    """Heads, and under oracle routing per-task adapters too: each task's loss reaches its own adapter only."""
    recipe = _keep_best_recipe(tiny_recipe, "per_task")
    recipe["phases"][1]["train"] = train
    out = _run(tmp_path, recipe, "best")
    checks = _records(out, "validation")
    (record,) = _records(out, "keep_best")
    rescored = json.loads(_eval_cli(out, "--split", "validation").stdout)
    steps = {}
    for task in ("sentiment", "topic"):
        accuracy = [r["scores"][task]["accuracy"] for r in checks]
        steps[task] = checks[accuracy.index(max(accuracy))]["step"]
        assert record["kept"][task] == {"step": steps[task], "score": max(accuracy)}
        assert rescored[task]["accuracy"] == max(accuracy)  # each head from its own best check, together in one model
    assert len(set(steps.values())) == 2, f"the tasks should peak at different steps here (else this shows little): {steps}"


def test_train_keep_best_per_task_refuses_shared_parameters(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    from mtkit import MtkitError

    recipe = _keep_best_recipe(tiny_recipe, "per_task")
    recipe["phases"][1]["train"] = ["heads", "backbone.layers.1"]
    with pytest.raises(MtkitError, match=r"shared\.toml: phases\.1\.keep_best: keep_best = \"per_task\" needs every trained parameter"):
        _run(tmp_path, recipe, "shared")
    assert (tmp_path / "shared" / "checkpoints" / "latest").is_file(), "the first phase's checkpoint stays"


@pytest.mark.parametrize(("crash", "mode"), [(1, "mean"), (5, "mean"), (5, "per_task")])
def test_train_keep_best_resumes_to_the_same_selection(tmp_path: Path, tiny_recipe: dict[str, Any], crash: int, mode: str) -> None:
    """Crashing at step 1 resumes from the phase's start (step 0 is validated again, and logged once);
    at step 5, from the checkpoint at step 3, which carries the best weights so far."""
    recipe = _keep_best_recipe(tiny_recipe, mode)
    reference = _run(tmp_path, recipe, "reference")
    with pytest.raises(_Crash):
        _run(tmp_path, recipe, "crashed", callbacks=_CrashAt("heads", crash))
    found = load_latest(tmp_path / "crashed")
    assert found is not None
    if crash == 5:
        assert found[1]["step"] == 3 and found[1]["best"], "the checkpoint holds the best weights so far"
        assert (found[0] / "best.safetensors").is_file()
        if mode == "mean":
            assert found[1]["best"]["mean"]["step"] == 2
    resumed = _run(tmp_path, recipe, "crashed", resume=True)
    assert _records(resumed, "keep_best") == _records(reference, "keep_best")
    assert [r["step"] for r in _records(resumed, "validation")] == [0, 2, 4, 6]
    a, b = load_file(str(reference / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_best_weights_replace_the_kept_copy_only_beyond_the_margin() -> None:
    from mtkit.train.keep_best import BestWeights

    weight = torch.nn.Parameter(torch.zeros(2))
    best = BestWeights({"mean": [("weight", weight)]}, min_improvement=0.05)
    for step, score in ((0, 0.40), (2, 0.44), (4, 0.46), (6, 0.50)):
        best.offer(step, {"mean": score})
        weight.data += 1  # the next check's weights
    assert best.kept() == {"mean": {"step": 4, "score": 0.46}}  # 0.44 is within 0.05 of 0.40; 0.50 within 0.05 of 0.46
    best.restore()
    assert torch.equal(weight.data, torch.full((2,), 2.0))  # the weights offered at step 4


def _fresh_heads_recipe(tiny_recipe: dict[str, Any], adapter_steps: int = 5) -> dict[str, Any]:
    """The tiny recipe whose second phase starts the topic head afresh and trains it alone (4 steps)."""
    recipe = copy.deepcopy(tiny_recipe)
    recipe["phases"][0]["steps"] = adapter_steps
    recipe["phases"][1] |= {"train": ["heads.topic"], "fresh_heads": True}
    return recipe


def test_train_fresh_heads_restart_the_heads_a_phase_trains(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    """A fresh head does not depend on what the first phase did to it; a head the phase does not train is kept."""
    recipes = {}
    for name, steps in (("five", 5), ("three", 3)):
        recipes[name] = _fresh_heads_recipe(tiny_recipe, steps)
        recipes[name]["phases"][1]["steps"] = 0  # only the new heads, untrained
    recipes["kept"] = copy.deepcopy(recipes["five"])
    recipes["kept"]["phases"][1]["fresh_heads"] = False  # the same first phase, heads not restarted
    five, three, kept = (load_file(str(_run(tmp_path, recipe, name) / "model.safetensors")) for name, recipe in recipes.items())
    topic = [k for k in five if k.startswith("heads.topic.")]
    sentiment = [k for k in five if k.startswith("heads.sentiment.")]
    assert topic and sentiment
    assert all(torch.equal(five[k], three[k]) for k in topic), "the new topic head is the same whatever phase 0 did"
    assert not all(torch.equal(five[k], kept[k]) for k in topic), "the trained topic head was replaced"
    assert all(torch.equal(five[k], kept[k]) for k in sentiment), "the sentiment head (not trained by the phase) is kept"
    assert not all(torch.equal(five[k], three[k]) for k in sentiment)


def test_train_heads_only_phase_draws_its_heads_tasks(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    """A phase that trains one task's head, one task per batch, draws that task's batches only: another
    task's loss reaches no parameter it trains (such a batch used to stop the run in backward)."""
    recipes = {}
    for name, steps in (("trained", 6), ("untrained", 0)):
        recipes[name] = copy.deepcopy(tiny_recipe)
        recipes[name]["phases"][1] |= {"train": ["heads.topic"], "batching": "task", "steps": steps}
    trained, untrained = (load_file(str(_run(tmp_path, recipe, name) / "model.safetensors")) for name, recipe in recipes.items())
    sentiment = [k for k in trained if k.startswith("heads.sentiment.")]
    topic = [k for k in trained if k.startswith("heads.topic.")]
    assert sentiment and topic
    assert all(torch.equal(trained[k], untrained[k]) for k in sentiment)
    assert not all(torch.equal(trained[k], untrained[k]) for k in topic)
    assert [r["step"] for r in _records(tmp_path / "trained", "train") if r["phase"] == "heads"] == [2, 4, 6]


@pytest.mark.parametrize("crash", [1, 4], ids=["phase_start", "mid_phase"])
def test_train_fresh_heads_resume_to_the_same_run(tmp_path: Path, tiny_recipe: dict[str, Any], crash: int) -> None:
    """Resumed from the phase's start the heads are restarted again; from its step-3 checkpoint they are not."""
    recipe = _fresh_heads_recipe(tiny_recipe)
    reference = _run(tmp_path, recipe, "reference")
    with pytest.raises(_Crash):
        _run(tmp_path, recipe, "crashed", callbacks=_CrashAt("heads", crash))
    found = load_latest(tmp_path / "crashed")
    assert found is not None and found[1]["step"] == (0 if crash == 1 else 3)
    resumed = _run(tmp_path, recipe, "crashed", resume=True)
    a, b = load_file(str(reference / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((resumed / "results.json").read_text()) == json.loads((reference / "results.json").read_text())
