"""recipes/compose.toml: the comparison its header documents is one valid `mtkit ablate` command."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from mtkit import Registry
from mtkit.recipe.resolve import load_recipe
from mtkit.sweep.plan import make_plan
from mtkit.sweep.resolve import resolve_jobs
from mtkit.sweep.variants import parse_swap, parse_variant

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "compose.toml"


def documented_command(recipe: Path = RECIPE) -> list[str]:
    """The `mtkit ablate` command in a recipe's header comment, as its arguments."""
    lines = [line.removeprefix("#").strip() for line in recipe.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    start = next(i for i, line in enumerate(lines) if line.startswith("mtkit ablate"))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("("))
    return shlex.split(" ".join(lines[start:end]))


def test_compose_recipe_command_compares_every_composition_against_oracle(registry: Registry, tmp_path: Path) -> None:
    args = documented_command()
    assert args[:3] == ["mtkit", "ablate", "recipes/compose.toml"]
    options = list(zip(args[3::2], args[4::2], strict=True))
    variants = [v for flag, spec in options if flag == "--swap" for v in parse_swap(spec)]
    variants += [parse_variant(spec) for flag, spec in options if flag == "--variant"]
    assert ("--reference", "oracle") in options
    names = [v.name for v in variants]
    assert names == [
        "oracle", "router", "arrow", "fusion_attention", "weighted", "gating", "uniform", "lorahub", "retrieval", "cat", "layer_gates",
        "linear", "ties", "dare_linear", "dare_ties", "magnitude_prune", "svd", "shared_lora", "phatgoose",
    ]
    jobs = resolve_jobs(RECIPE, variants, [], None, registry)
    plan = make_plan(jobs, tmp_path)
    shared = [spec for spec in plan.specs if spec.shared]
    # Phase 1 (the library) is trained once for every variant that composes it; shared_lora trains its own.
    assert len(shared) == 1 and [p["name"] for p in shared[0].recipe["phases"]] == ["adapters"]
    forked = {spec.key.split("/")[0] for spec in plan.specs if spec.fork is not None}
    assert forked == set(names) - {"shared_lora"}
    by_name = {job.variant: job.recipe for job in jobs}
    for name in ("oracle", "arrow", "uniform", "ties", "svd", "shared_lora", "lorahub", "retrieval", "phatgoose"):
        assert by_name[name]["phases"][1]["steps"] == 0  # nothing to train: the composition only evaluates
    for name in ("router", "fusion_attention", "weighted", "gating", "cat", "layer_gates"):
        assert by_name[name]["phases"][1]["train"] == ["combiner"]
    # Combiners with a routine of their own run it at the composing phase's start (the others skip it).
    assert all(job.recipe["phases"][1]["fit_combiner"] for job in jobs if job.variant != "shared_lora")
    assert list(by_name["shared_lora"]["adapters"]) == ["shared"]


def peft_library_command() -> list[str]:
    """The `mtkit run` command in the header that composes a library trained with PEFT, as its arguments."""
    lines = [line.removeprefix("#").strip() for line in RECIPE.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    start = next(i for i, line in enumerate(lines) if line.startswith("mtkit run recipes/compose.toml"))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("--set"))
    return shlex.split(" ".join(lines[start:end]))


def test_compose_recipe_composes_a_library_trained_with_peft(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The header's second command, run where `lib` holds PEFT SEQ_CLS folders: each becomes its task's adapter,
    each task's head pools as transformers does (so the saved classifier imports), and phase 1 trains nothing."""
    from peft import LoraConfig, get_peft_model
    from transformers import BertConfig, BertForSequenceClassification

    assert "python docs/examples/train_peft_library.py recipes/compose.toml lib" in RECIPE.read_text(encoding="utf-8")
    args = peft_library_command()
    assert args[:3] == ["mtkit", "run", "recipes/compose.toml"] and set(args[3::2]) == {"--set"}
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    for task in ("sentiment", "topic", "subject"):
        model = get_peft_model(BertForSequenceClassification(config), LoraConfig(task_type="SEQ_CLS", r=2, target_modules=["query", "value"]))
        model.save_pretrained(tmp_path / "lib" / task)
    monkeypatch.chdir(tmp_path)  # `lib` is relative to where mtkit runs
    resolved = load_recipe(RECIPE, args[4::2], registry)
    assert sorted(resolved.recipe.adapters) == ["sentiment", "subject", "topic"]  # one per folder, named after it
    assert {node.where for node in resolved.adapters().values()} == {"libraries.lib"}
    assert all(resolved.head(task).config.pooling == "pooler" for task in resolved.recipe.tasks)  # type: ignore[attr-defined]
    assert resolved.recipe.phases[0].steps == 0
