"""recipes/moe_lora.toml: the comparison its header documents is one `mtkit ablate` command, and it runs (a few steps
on a tiny random BERT) with the parameter counts the header states."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtkit import Registry
from mtkit.sweep.ablate import run_ablation
from mtkit.sweep.resolve import resolve_jobs
from mtkit.sweep.variants import parse_variant
from tests.conftest import TINY_BERT
from tests.test_compose_recipe import documented_command

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "moe_lora.toml"
NAMES = ["per_task_lora", "shared_lora", "shared_mixlora", "shared_hydra_lora"]


def variants() -> tuple[list[str], list]:  # type: ignore[type-arg]
    args = documented_command(RECIPE)
    assert args[:3] == ["mtkit", "ablate", "recipes/moe_lora.toml"]
    options = list(zip(args[3::2], args[4::2], strict=True))
    assert ("--reference", "per_task_lora") in options and ("--seeds", "0-2") in options
    return args, [parse_variant(spec) for flag, spec in options if flag == "--variant"]


def test_moe_lora_recipe_command_compares_the_four_arms(registry: Registry) -> None:
    _, found = variants()
    assert [v.name for v in found] == NAMES
    jobs = {job.variant: job.recipe for job in resolve_jobs(RECIPE, found, [], None, registry)}
    assert list(jobs["per_task_lora"]["adapters"]) == ["sentiment", "topic", "subject"]
    assert {name: jobs[name]["adapters"]["shared"]["type"] for name in NAMES[1:]} == dict(zip(NAMES[1:], ["lora", "mixlora", "hydra_lora"], strict=True))
    assert all(jobs[name]["phases"][0]["aux_losses"] == {"expert_balance": 0.01} for name in NAMES)


@pytest.mark.slow
def test_moe_lora_recipe_runs_a_few_steps_with_the_stated_parameter_counts(tmp_path: Path, registry: Registry) -> None:
    _, found = variants()
    sizes = ", ".join(f"{key} = {value}" for key, value in TINY_BERT["config_overrides"].items())
    tiny = ["backbone.random_init=true", f"backbone.config_overrides={{{sizes}}}"]
    small = [f"tasks.{t}.dataset.max_train_examples=32" for t in ("sentiment", "topic", "subject")]
    small += [f"tasks.{t}.dataset.max_eval_examples=8" for t in ("sentiment", "topic", "subject")]
    comparison = run_ablation(
        RECIPE, found, [*tiny, *small, "phases.0.steps=3", "phases.0.batching=mixed", "run.batch_size=12", "run.inference_cost=false"], output_dir=tmp_path / "sweep", registry=registry
    )
    rows = {row.variant: row for row in comparison.variants}
    assert all(rows[name].ok == 1 for name in NAMES), [row.errors for row in comparison.variants]
    trained = {name: rows[name].trained_params for name in NAMES}
    sites, width = 2 * 2, 32  # query and value in each of the tiny BERT's 2 layers
    assert trained["shared_lora"] == trained["per_task_lora"], trained
    assert trained["shared_mixlora"] == trained["per_task_lora"] + sites * 8 * width  # + the routers
    assert trained["shared_hydra_lora"] == trained["per_task_lora"] + sites * 5 * width
