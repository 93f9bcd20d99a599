"""recipes/compose.toml: the comparison its header documents is one valid `mtkit ablate` command."""

from __future__ import annotations

import shlex
from pathlib import Path

from mtkit import Registry
from mtkit.sweep.plan import make_plan
from mtkit.sweep.resolve import resolve_jobs
from mtkit.sweep.variants import parse_swap, parse_variant

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "compose.toml"


def documented_command() -> list[str]:
    """The `mtkit ablate` command in the recipe's header comment, as its arguments."""
    lines = [line.removeprefix("#").strip() for line in RECIPE.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
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
