"""The routing seam: one combiner per routing mode, components seeded by their key path, loss weights, recorded routing."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from mtkit import Registry, TaskInfo
from mtkit.model.build import build_model
from mtkit.recipe.resolve import resolve
from mtkit.train.run import run_recipe
from mtkit.train.trainer import task_loss
from tests.conftest import ROOT, write_toml
from tests.core.test_cli import mtkit

INFOS = {"sentiment": TaskInfo("sentiment", 0, ("rotten", "fresh")), "topic": TaskInfo("topic", 1, tuple("abcde"))}


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_components_start_alike_whatever_the_combiner(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    """Swapping the combiner changes neither how the heads nor how the adapters start (each has its own seed)."""
    models = {}
    for combiner in ({"type": "router", "hidden_dim": 16}, {"type": "fusion_attention"}, {"type": "oracle"}):
        recipe = copy.deepcopy(tiny_recipe)
        recipe["combiner"] = combiner
        models[combiner["type"]] = build_model(resolve(recipe, registry, "r.toml"), INFOS)
    router, fusion, oracle = models["router"], models["fusion_attention"], models["oracle"]
    for other in (fusion, oracle):
        for part in ("heads", "adapters", "backbone"):
            mine, theirs = _state(getattr(router, part)), _state(getattr(other, part))
            assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine), part
    recipe = copy.deepcopy(tiny_recipe)
    recipe["run"]["seed"] = 1  # another run seed does start them differently
    reseeded = build_model(resolve(recipe, registry, "r.toml"), INFOS)
    assert not torch.equal(reseeded.heads["topic"].mlp[-1].weight, oracle.heads["topic"].mlp[-1].weight)


def test_oracle_routed_first_phase_is_identical_across_combiner_variants(tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    results, weights = {}, {}
    for combiner in ("router", "weighted"):
        recipe = copy.deepcopy(tiny_recipe)
        recipe["combiner"] = {"type": combiner}
        recipe["run"]["output_dir"] = str(tmp_path / combiner)
        recipe["phases"][1] = {"name": "learned", "steps": 2, "train": ["combiner"], "routing": "learned", "batching": "mixed"}
        run = run_recipe(write_toml(tmp_path / f"{combiner}.toml", recipe))
        results[combiner] = json.loads((run.path / "results.json").read_text())
        weights[combiner] = load_file(str(run.path / "model.safetensors"))
    assert results["router"]["adapters"] == results["weighted"]["adapters"]
    # Phase 2 trains the combiner alone, so the adapters and heads saved at the end are phase 1's, bit for bit.
    shared = [k for k in weights["router"] if k.startswith(("adapters.", "heads."))]
    assert shared and all(torch.equal(weights["router"][k], weights["weighted"][k]) for k in shared)


def _model(tiny_recipe: dict[str, Any], registry: Registry) -> Any:
    return build_model(resolve(copy.deepcopy(tiny_recipe), registry, "r.toml"), INFOS).train()


def _batch(model: Any, task: str, texts: list[str], labels: list[int]) -> tuple[str, dict[str, Any]]:
    head = model.heads[task]
    tokenizer = model.backbone.tokenizer
    return task, head.collate(head.encode({"text": texts, "label": labels}, tokenizer, 32), tokenizer)


def test_loss_weight_scales_a_tasks_gradient_in_task_and_mixed_batches(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    tiny_recipe["adapters"]["sentiment"]["init"] = tiny_recipe["adapters"]["topic"]["init"] = "random"
    model = _model(tiny_recipe, registry).eval()  # no dropout: the same forward each time
    batches = [_batch(model, "sentiment", ["a fine film", "dull"], [1, 0]), _batch(model, "topic", ["shares fell", "a goal"], [0, 3])]

    def grads(weights: dict[str, float], batch: list[Any]) -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        model.requires_grad_(True)
        model.backbone.requires_grad_(False)
        losses, _ = model(batch)
        task_loss(losses, batch, weights).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    for batch in (batches[:1], batches):  # a task batch, then a mixed batch of both tasks
        ones = grads({"sentiment": 1.0, "topic": 1.0}, batch)
        doubled = grads({"sentiment": 2.0, "topic": 1.0}, batch)
        for name, grad in ones.items():
            own = name.startswith(("heads.sentiment", "adapters.sentiment"))
            if own or name.startswith(("heads.topic", "adapters.topic")):
                torch.testing.assert_close(doubled[name], grad * (2.0 if own else 1.0))
    zero = grads({"sentiment": 0.0, "topic": 1.0}, batches)
    assert not any(n.startswith("heads.sentiment") for n in zero)  # left out of the loss: no gradient at all
    # In a mixed batch the sentiment adapter is computed for the whole batch, weighted 0 on the topic rows.
    assert all(not g.any() for n, g in zero.items() if n.startswith("adapters.sentiment"))
    assert any(g.any() for n, g in zero.items() if n.startswith("heads.topic"))


def test_loss_weight_zero_leaves_the_tasks_head_and_adapter_untouched(tiny_recipe: dict[str, Any], registry: Registry, tmp_path: Path) -> None:
    tiny_recipe["tasks"]["sentiment"]["loss_weight"] = 0.0
    tiny_recipe["phases"][1]["train"] = ["adapters", "heads"]  # mixed batches of both tasks
    tiny_recipe["run"] |= {"output_dir": str(tmp_path / "run"), "checkpoint_every": 0}
    start = _model(tiny_recipe, registry)
    run = run_recipe(write_toml(tmp_path / "r.toml", tiny_recipe))
    from safetensors.torch import load_file

    trained = load_file(str(run.path / "model.safetensors"))
    for name, value in start.state_dict().items():
        if name.startswith(("heads.sentiment.", "adapters.sentiment.")):
            assert torch.equal(trained[name], value), name
    assert not torch.equal(trained["heads.topic.mlp.1.weight"], start.state_dict()["heads.topic.mlp.1.weight"])


def test_predict_gives_the_routing_recorded_in_evaluation(tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    """The router's annealed temperature travels with the weights, so predicting a held-out input reproduces its routing."""
    tiny_recipe["combiner"] = {"type": "router", "hidden_dim": 16, "temperature": 3.0}
    tiny_recipe["run"] |= {"output_dir": str(tmp_path / "run"), "checkpoint_every": 0}
    tiny_recipe["phases"][1] = {
        "name": "router", "steps": 4, "train": ["combiner"], "routing": "learned", "batching": "mixed", "lr": 1e-3,
        "temperature": {"start": 2.0, "end": 0.2},
    }
    run = run_recipe(write_toml(tmp_path / "r.toml", tiny_recipe))
    rows = [json.loads(line) for line in (run.path / "predictions" / "router" / "topic.jsonl").read_text().splitlines()][:3]
    texts = [row["input"]["text"] for row in rows]
    result = mtkit("predict", str(run.path), *texts, "--task", "topic", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for row, item in zip(rows, json.loads(result.stdout), strict=True):
        predicted = item["predictions"]["topic"]
        assert predicted["prediction"] == row["prediction"]
        for adapter, weight in row["routing"].items():
            assert predicted["routing"][adapter] == pytest.approx(weight, abs=1e-4), (adapter, predicted, row)
    assert max(rows[0]["routing"].values()) < 1.0  # soft probabilities, which depend on the temperature
    from mtkit.rundir.load import load_run

    assert float(load_run(run.path).model.combiner.temperature) == pytest.approx(0.2)  # the annealed end, not 3.0


def test_validate_rejects_an_aux_loss_typo_without_importing_torch(tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    tiny_recipe["phases"][1]["aux_losses"] = {"load_balanse": 0.1}
    path = write_toml(tmp_path / "typo.toml", tiny_recipe)
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from mtkit.cli.app import app\n"
        f"r = CliRunner().invoke(app, ['validate', {str(path)!r}])\n"
        "print(r.exit_code, 'torch' in sys.modules)\n"
        "print(r.output)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    first, _, output = result.stdout.partition("\n")
    assert first == "2 False", result.stdout
    assert f"{path}: phases.1.aux_losses.load_balanse: no combiner or adapter declares this auxiliary loss; did you mean 'load_balance'?" in output
    assert "known: consistency, efficiency, entropy, expert_balance, load_balance, task_supervision, value_identity" in output


def test_task_adapters_route_a_task_to_another_adapter_for_one_phase(tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    """A best-single-adapter baseline from a recipe: phase 2 serves the topic task with the sentiment adapter."""
    tiny_recipe["run"] |= {"output_dir": str(tmp_path / "run"), "checkpoint_every": 0}
    tiny_recipe["phases"][1] = {"name": "borrow", "steps": 2, "train": ["heads.topic"], "task_adapters": {"topic": "sentiment"}}
    run = run_recipe(write_toml(tmp_path / "r.toml", tiny_recipe))
    from mtkit.rundir.load import load_run

    model = load_run(run.path).model
    assert model.combiners["oracle"].task_adapters() == {"sentiment": "sentiment", "topic": "sentiment"}  # the oracle routes as the last phase did
    ids = model.backbone.tokenizer(["shares fell sharply"], return_tensors="pt")
    with torch.no_grad():
        topic = model.run_backbone(ids["input_ids"], ids["attention_mask"], torch.tensor([1])).hidden
        sentiment = model.run_backbone(ids["input_ids"], ids["attention_mask"], torch.tensor([0])).hidden
    torch.testing.assert_close(topic, sentiment, rtol=0, atol=0)
