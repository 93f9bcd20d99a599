"""Training as on real hardware: gradient accumulation, epochs, activation checkpointing, bf16, and several processes
that equal one (each against the plain run it must reproduce)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from mtkit import Registry, TaskInfo
from mtkit.model.build import build_model
from mtkit.recipe.resolve import resolve
from mtkit.train.run import run_recipe
from tests.conftest import ROOT, write_toml

NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
"""Runs compared for equality draw no random masks: a dropout mask over 2B rows is not two masks over B rows."""


def _deterministic(tiny_recipe: dict[str, Any], tmp_path: Path, name: str) -> dict[str, Any]:
    recipe = copy.deepcopy(tiny_recipe)
    recipe["backbone"]["config_overrides"] = {**recipe["backbone"]["config_overrides"], **NO_DROPOUT}
    for task in recipe["tasks"].values():
        task["head"]["dropout"] = 0.0
    recipe["run"] |= {"output_dir": str(tmp_path / name), "checkpoint_every": 0, "eval_batch_size": 7}
    return recipe


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def _assert_close_runs(a: Path, b: Path, atol: float = 2e-6) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=atol, rtol=1e-5, msg=key)
    ra, rb = _flat(json.loads((a / "results.json").read_text())), _flat(json.loads((b / "results.json").read_text()))
    assert ra == pytest.approx(rb)


def _flat(node: Any, prefix: str = "") -> dict[str, float]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}/{key}").items()}
    return {prefix: node}


@pytest.mark.parametrize("batching", ["task", "mixed"])
def test_accumulated_micro_batches_equal_one_large_batch(tiny_recipe: dict[str, Any], tmp_path: Path, batching: str) -> None:
    runs = {}
    for name, batch, accumulation in (("large", 16, 1), ("accumulated", 8, 2), ("micro", 4, 4)):
        recipe = _deterministic(tiny_recipe, tmp_path, f"{name}-{batching}")
        recipe["phases"] = [{"name": "train", "steps": 3, "train": ["adapters", "heads"], "lr": 5e-3, "batching": batching}]
        recipe["run"] |= {"batch_size": batch, "grad_accumulation": accumulation}
        runs[name] = run_recipe(write_toml(tmp_path / f"{name}-{batching}.toml", recipe)).path
    _assert_close_runs(runs["large"], runs["accumulated"])
    _assert_close_runs(runs["large"], runs["micro"])
    data = json.loads((runs["micro"] / "data.json").read_text())
    assert data["phases"]["train"] == {"steps": 3, "effective_batch": 16}


def test_epochs_resolve_to_steps_from_the_task_sizes(tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    recipe = copy.deepcopy(tiny_recipe)
    recipe["run"] |= {"output_dir": str(tmp_path / "epochs"), "checkpoint_every": 0, "batch_size": 8, "grad_accumulation": 2}
    recipe["phases"] = [
        {"name": "adapters", "epochs": 1.5, "train": ["adapters", "heads"]},  # 64 + 64 examples / (8 x 2) x 1.5 = 12 steps
        {"name": "topic_head", "epochs": 1, "train": ["heads.topic"]},  # the topic task's 64 examples: 4 steps
    ]
    run = run_recipe(write_toml(tmp_path / "epochs.toml", recipe)).path
    phases = json.loads((run / "data.json").read_text())["phases"]
    assert phases == {
        "adapters": {"steps": 12, "effective_batch": 16, "epochs": 1.5},
        "topic_head": {"steps": 4, "effective_batch": 16, "epochs": 1},
    }
    steps = [json.loads(line)["global_step"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert steps[-1] == 16
    from mtkit import RecipeError

    recipe["phases"][0]["steps"] = 3
    with pytest.raises(RecipeError, match=r"phases\.0: give exactly one of steps and epochs"):
        run_recipe(write_toml(tmp_path / "both.toml", recipe))


def test_activation_checkpointing_gives_the_same_gradients(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    grads = {}
    for checkpointing in (False, True):
        recipe = copy.deepcopy(tiny_recipe)
        recipe["backbone"]["config_overrides"] = {**recipe["backbone"]["config_overrides"], **NO_DROPOUT}
        recipe["backbone"]["gradient_checkpointing"] = checkpointing
        recipe["combiner"] = {"type": "router", "hidden_dim": 8, "dropout": 0.0, "gumbel": False}
        for table in recipe["adapters"].values():
            table["init"] = "random"
        for task in recipe["tasks"].values():
            task["head"]["dropout"] = 0.0
        infos = {"sentiment": TaskInfo("sentiment", 0, ("a", "b")), "topic": TaskInfo("topic", 1, tuple("abcde"))}
        model = build_model(resolve(recipe, registry, "r.toml"), infos).train()
        for task in recipe["tasks"]:
            model.heads[task].requires_grad_(True)
        model.adapters.requires_grad_(True)
        model.combiner.requires_grad_(True)
        tokenizer = model.backbone.tokenizer
        head = model.heads["topic"]
        batch = head.collate(head.encode({"text": ["shares fell", "a late goal won it"], "label": [0, 3]}, tokenizer, 16), tokenizer)
        with model.use_combiner("combiner"):
            losses, _ = model([("topic", batch)])
        (losses["topic"] + sum(model.aux_losses.values())).backward()
        grads[checkpointing] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads[False].keys() == grads[True].keys() and any(k.startswith("combiner.") for k in grads[True])
    for name, grad in grads[False].items():
        torch.testing.assert_close(grads[True][name], grad, atol=1e-7, rtol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


def test_bf16_on_cpu_trains_close_to_float32_with_float32_parameters(tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    from tests.core.test_cli import mtkit

    runs = {}
    for precision in ("no", "bf16"):  # each in a process of its own: Accelerate's precision is set once per process
        recipe = _deterministic(tiny_recipe, tmp_path, precision)
        recipe["run"]["mixed_precision"] = precision
        recipe["run"]["device"] = "cpu"
        result = mtkit("run", str(write_toml(tmp_path / f"{precision}.toml", recipe)), cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        runs[precision] = tmp_path / precision
    plain, half = _weights(runs["no"]), _weights(runs["bf16"])
    assert {t.dtype for t in half.values()} == {torch.float32}  # adapters and heads keep float32 parameters
    changed = [k for k in plain if k.startswith("adapters.") and not torch.equal(plain[k], half[k])]
    assert changed  # bf16 matmuls really ran
    for key in plain:  # ... and stayed close to the float32 run
        assert (half[key] - plain[key]).abs().max() <= 0.02 * max(1.0, float(plain[key].abs().max())), key
    logs = [json.loads(line) for line in (runs["bf16"] / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in logs)


def _launch(path: Path, processes: int) -> subprocess.CompletedProcess[str]:
    # torchrun starts the processes (Accelerate's own launcher runs one process on a CPU); Accelerate sees a
    # multi-CPU run over gloo.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "-m", "mtkit", "run", str(path)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("combiner", ["oracle", "router"])
def test_two_processes_with_batch_b_equal_one_process_with_batch_2b(tiny_recipe: dict[str, Any], tmp_path: Path, combiner: str) -> None:
    """DDP over gloo on CPU (torchrun): each process takes its share of the same global batch; gradients average to the
    big batch's.
    Evaluation shards the held-out split and gathers every prediction once."""
    recipe = _deterministic(tiny_recipe, tmp_path, "one")
    recipe["phases"][1]["train"] = ["adapters", "heads"]
    if combiner == "router":
        recipe["combiner"] = {"type": "router", "hidden_dim": 8, "dropout": 0.0, "gumbel": False}
        recipe["phases"].append({"name": "router", "steps": 3, "train": ["combiner"], "routing": "learned", "batching": "mixed", "lr": 1e-2})
    recipe["run"]["batch_size"] = 8
    one = _launch(write_toml(tmp_path / "one.toml", recipe), 1)
    assert one.returncode == 0, one.stderr[-3000:]
    recipe["run"] |= {"batch_size": 4, "output_dir": str(tmp_path / "two")}
    two = _launch(write_toml(tmp_path / "two.toml", recipe), 2)
    assert two.returncode == 0, two.stderr[-3000:]
    _assert_close_runs(tmp_path / "one", tmp_path / "two", atol=1e-5)
    assert json.loads((tmp_path / "two" / "data.json").read_text())["phases"]["heads"]["effective_batch"] == 8  # 4 x 2 processes
    held_out = [line for line in (tmp_path / "two" / "predictions" / recipe["phases"][-1]["name"] / "topic.jsonl").read_text().splitlines()]
    assert len(held_out) == 24  # 24 held-out examples over 2 processes in batches of 7: each predicted once
