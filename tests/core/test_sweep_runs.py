"""Sweeps that train: shared phases against runs from scratch, a failing variant, kill -9 and rerun, Ray."""

from __future__ import annotations

import copy
import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from mtkit import MtkitError
from mtkit.sweep.ablate import Execution, run_ablation
from mtkit.sweep.variants import Variant, parse_swap
from tests.conftest import ROOT, write_toml
from tests.core.test_cli import mtkit

LR = [Variant("slow", ("phases.1.lr=1e-3",)), Variant("fast", ("phases.1.lr=4e-3",))]


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    """Runs in this process set torch's thread count from run.threads (1 here: on two shared cores a second
    thread waits on a busy core and a tiny run takes far longer); give the next test torch's own."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def sweep_recipe(tiny_recipe: dict[str, Any]) -> dict[str, Any]:
    """The tiny recipe, smaller still: two short phases on 32 training and 16 held-out examples per task."""
    recipe = copy.deepcopy(tiny_recipe)
    for task in recipe["tasks"].values():
        task["dataset"].update(max_train_examples=32, max_eval_examples=16)
    recipe["run"]["checkpoint_every"] = 2
    recipe["phases"] = [
        {"name": "adapters", "steps": 3, "train": ["adapters", "heads"], "lr": 5e-3, "evaluate": False},
        {"name": "heads", "steps": 3, "train": ["heads"], "lr": 1e-3, "batching": "mixed"},
    ]
    return recipe


def _logs(run_dir: Path) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("time", "seconds_per_step")} for r in records]


def _assert_same_runs(a: Path, b: Path) -> None:
    assert json.loads((a / "results.json").read_text()) == json.loads((b / "results.json").read_text())
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    assert _logs(a) == _logs(b)


def test_sweep_shared_phases_equal_training_each_variant_from_scratch(tmp_path: Path, sweep_recipe: dict[str, Any]) -> None:
    path = write_toml(tmp_path / "tiny.toml", sweep_recipe)
    threads = Execution(threads=1)
    shared = run_ablation(path, LR, output_dir=tmp_path / "shared", execution=threads)
    alone = run_ablation(path, LR, output_dir=tmp_path / "alone", execution=threads, share=False)
    assert len(shared.shared) == 1 and "phases adapters trained once for slow/seed-0, fast/seed-0" in shared.shared[0]
    assert [r.shared_phases for r in shared.variants] == [["adapters"], ["adapters"]] and alone.shared == []
    for name in ("slow", "fast"):
        # bit for bit: scores, weights, and the logs (the shared run's own closing evaluation is not carried over)
        _assert_same_runs(tmp_path / "shared" / name / "seed-0", tmp_path / "alone" / name / "seed-0")
    assert json.loads((tmp_path / "shared" / "fast" / "seed-0" / "sweep.json").read_text())["start"] == "forked"
    assert "shared phases" in (tmp_path / "shared" / "comparison.md").read_text()


def test_sweep_shared_phases_equal_from_scratch_across_combiner_types(tmp_path: Path, sweep_recipe: dict[str, Any]) -> None:
    """Phase 0 routes by task ids, so router and weighted variants share it; each keeps its own new combiner."""
    recipe = copy.deepcopy(sweep_recipe)
    recipe["combiner"] = {"type": "router", "hidden_dim": 16, "num_layers": 2}
    recipe["phases"][1] = {"name": "router", "steps": 3, "train": ["combiner"], "lr": 5e-3, "routing": "learned", "batching": "mixed"}
    path = write_toml(tmp_path / "router.toml", recipe)
    variants = parse_swap("combiner.type=router,weighted")
    threads = Execution(threads=1)
    shared = run_ablation(path, variants, output_dir=tmp_path / "shared", execution=threads)
    assert shared.variants[1].dropped == ("combiner.hidden_dim", "combiner.num_layers")
    assert [r.shared_phases for r in shared.variants] == [["adapters"], ["adapters"]]
    run_ablation(path, variants, output_dir=tmp_path / "alone", execution=threads, share=False)
    for name in ("router", "weighted"):
        _assert_same_runs(tmp_path / "shared" / name / "seed-0", tmp_path / "alone" / name / "seed-0")


def test_sweep_failing_variant_is_reported_and_the_others_keep_their_results(tmp_path: Path, sweep_recipe: dict[str, Any]) -> None:
    """Two worker subprocesses; one variant's run raises while building its model."""
    path = write_toml(tmp_path / "tiny.toml", sweep_recipe)
    variants = [LR[0], Variant("broken", ('adapters.topic.target_modules=["no_such_site"]',))]
    comparison = run_ablation(path, variants, output_dir=tmp_path / "abl", execution=Execution(workers=2, threads=2))
    good, broken = comparison.variants
    assert good.status == "ok" and good.scores["topic/accuracy"].n == 1
    assert broken.status == "error" and len(broken.errors) == 1 and "matches no Linear site" in broken.errors[0]
    assert "topic/accuracy" not in broken.scores
    rows = {r["variant"]: r for r in csv.DictReader((tmp_path / "abl" / "comparison.csv").open())}
    assert rows["broken"]["status"] == "error" and "no_such_site" in rows["broken"]["errors"] and rows["slow"]["topic/accuracy"]
    markdown = (tmp_path / "abl" / "comparison.md").read_text()
    assert "| errors |" in markdown and "| broken | error |" in markdown and "no_such_site" in markdown
    assert json.loads((tmp_path / "abl" / "slow" / "seed-0" / "recipe.json").read_text())["run"]["threads"] == 1  # 2 threads, 2 workers
    assert (tmp_path / "abl" / ".sweep" / "logs" / "broken.seed-0.log").is_file()


def _latest_step(run_dir: Path) -> int:
    try:
        return int((run_dir / "checkpoints" / "latest").read_text().strip().split("-")[1])
    except (OSError, ValueError, IndexError):
        return -1


def test_sweep_killed_with_sigkill_and_rerun_ends_with_the_same_table(tmp_path: Path, sweep_recipe: dict[str, Any]) -> None:
    recipe = copy.deepcopy(sweep_recipe)
    recipe["phases"][1]["steps"] = 24
    path = write_toml(tmp_path / "tiny.toml", recipe)
    threads = "1"
    out = tmp_path / "sweep"
    args = ["ablate", str(path), "--variant", "slow: phases.1.lr=1e-3", "--variant", "fast: phases.1.lr=4e-3", "--threads", threads]
    args += ["--output-dir", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mtkit", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    victim = out / "fast" / "seed-0"
    while _latest_step(victim) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # the fork starts at step 3 (the shared phase); kill it after its own first checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 5 <= _latest_step(victim) < 27 and not (victim / "results.json").exists(), "killed mid-run"
    finished = (out / "slow" / "seed-0" / "sweep.json").read_text()
    rerun = mtkit(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert (out / "slow" / "seed-0" / "sweep.json").read_text() == finished, "a finished run is skipped"
    assert json.loads((victim / "sweep.json").read_text())["start"] == "resumed"
    run_ablation(path, LR, output_dir=tmp_path / "uninterrupted", execution=Execution(threads=int(threads)))

    def table(root: Path) -> list[dict[str, str]]:
        timed = ("seconds", "inference_time")  # times depend on the machine's load
        return [{k: v for k, v in row.items() if k not in timed} for row in csv.DictReader((root / "comparison.csv").open())]

    assert table(out) == table(tmp_path / "uninterrupted")
    for name in ("slow", "fast"):
        _assert_same_runs(out / name / "seed-0", tmp_path / "uninterrupted" / name / "seed-0")


def test_sweep_ray_tasks_on_a_local_ray_match_runs_in_this_process(tmp_path: Path, sweep_recipe: dict[str, Any]) -> None:
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'mtkit[ray]')")
    from mtkit.rundir.load import evaluate_run

    path = write_toml(tmp_path / "tiny.toml", sweep_recipe)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_ablation(path, LR, output_dir=tmp_path / "ray", execution=Execution(ray=True, ray_cpus=1))
    finally:
        ray.shutdown()
    local = run_ablation(path, LR, output_dir=tmp_path / "local", execution=Execution(threads=1))  # a Ray task's 1 CPU = 1 thread
    assert [r.status for r in remote.variants] == ["ok", "ok"] and len(remote.shared) == 1
    for name in ("slow", "fast"):
        run_dir = tmp_path / "ray" / name / "seed-0"
        _assert_same_runs(run_dir, tmp_path / "local" / name / "seed-0")
        assert json.loads((run_dir / "recipe.json").read_text())["run"]["output_dir"] == str(run_dir)
        assert not (run_dir / "tensorboard").exists() and not (run_dir / "checkpoints").exists()
        # what comes back is enough to evaluate the run again on the driver
        assert evaluate_run(run_dir)["topic"] == json.loads((run_dir / "results.json").read_text())["heads"]["oracle"]["topic"]
    [shared] = [p for p in (tmp_path / "ray" / "_shared").iterdir()]
    assert (shared / "checkpoints" / "latest").is_file()
    assert [r.scores for r in remote.variants] == [r.scores for r in local.variants]


def test_sweep_options_fail_before_anything_trains(tmp_path: Path, sweep_recipe: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(tmp_path / "tiny.toml", sweep_recipe)
    with pytest.raises(MtkitError, match=r"--reference 'nope' is not a variant of this sweep \(variants: slow, fast\)"):
        run_ablation(path, LR, reference="nope", output_dir=tmp_path / "a")
    with pytest.raises(MtkitError, match="--workers and --ray"):
        run_ablation(path, LR, output_dir=tmp_path / "a", execution=Execution(workers=2, ray=True))
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    with pytest.raises(MtkitError, match=r"pip install 'mtkit\[ray\]'"):
        run_ablation(path, LR, output_dir=tmp_path / "a", execution=Execution(ray=True))
    assert not (tmp_path / "a").exists()
