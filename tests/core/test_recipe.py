from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from mtkit import RecipeError, Registry
from mtkit.recipe import apply_overrides, load_recipe, validate_recipe
from tests.conftest import write_toml


def test_recipe_tiny_recipe_validates(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    recipe, configs = validate_recipe(tiny_recipe, registry, "tiny.toml")
    assert recipe.adapter_for_task("topic") == "topic"
    assert configs["adapters.sentiment"].rank == 4  # type: ignore[attr-defined]
    assert set(configs) >= {"backbone", "combiner", "tasks.topic.dataset", "tasks.topic.metrics.0"}


def test_recipe_reports_all_problems_with_key_paths(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    bad = copy.deepcopy(tiny_recipe)
    bad["run"]["nmae"] = "oops"  # misspelled key
    bad["run"]["batch_size"] = "big"  # wrong type
    bad["adapters"]["sentiment"]["rank"] = -4  # out of range
    bad["combiner"]["type"] = "routr"  # unknown component
    with pytest.raises(RecipeError) as info:
        validate_recipe(bad, registry, "bad.toml")
    problems = info.value.problems
    assert len(problems) == 4, problems
    text = "\n".join(problems)
    assert "bad.toml: run.nmae: unknown key; did you mean 'name'?" in text
    assert "bad.toml: run.batch_size: input should be a valid integer" in text
    assert "bad.toml: adapters.sentiment.rank: input should be greater than 0 (got -4)" in text
    assert "bad.toml: combiner.type 'routr' is not a registered combiner (known: fusion_attention, gating, oracle, random, router, uniform, weighted)" in text


def test_recipe_unknown_key_inside_component_lists_allowed_fields(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    tiny_recipe["adapters"]["topic"]["rnak"] = 8
    with pytest.raises(RecipeError) as info:
        validate_recipe(tiny_recipe, registry, "r.toml")
    assert info.value.problems == [
        "r.toml: adapters.topic.rnak: unknown key; did you mean 'rank'? (allowed: alpha, dropout, from_peft, init, layers, rank, target_modules)"
    ]


def test_recipe_rejects_selectors_and_references_that_match_nothing(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    tiny_recipe["phases"][0]["train"] = ["adapters.sentimnt", "backbone.layers.1-2"]
    tiny_recipe["tasks"]["topic"]["adapter"] = "nope"
    with pytest.raises(RecipeError) as info:
        validate_recipe(tiny_recipe, registry, "r.toml")
    text = info.value.problems[0]
    assert "phases.0.train: selector 'adapters.sentimnt' matches nothing" in text
    assert "tasks.topic.adapter 'nope' is not an adapter id" in text


def test_recipe_validation_checks_need_validation_splits(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    tiny_recipe["tasks"]["sentiment"]["dataset"]["validation_size"] = 0.1
    tiny_recipe["phases"][1]["eval_every"] = 2
    with pytest.raises(RecipeError) as info:
        validate_recipe(copy.deepcopy(tiny_recipe), registry, "r.toml")
    assert info.value.problems == [
        "r.toml: phases.1.eval_every scores validation splits, but tasks.topic.dataset has none; "
        "set tasks.topic.dataset.validation_size (e.g. 0.1)"
    ]
    tiny_recipe["tasks"]["topic"]["dataset"]["validation_size"] = 0.1
    recipe, configs = validate_recipe(copy.deepcopy(tiny_recipe), registry, "r.toml")
    assert recipe.phases[1].eval_every == 2 and configs["tasks.topic.dataset"].validation_size == 0.1  # type: ignore[attr-defined]
    del tiny_recipe["phases"][1]["eval_every"]
    tiny_recipe["phases"][1]["keep_best"] = "mean"
    with pytest.raises(RecipeError) as info:
        validate_recipe(tiny_recipe, registry, "r.toml")
    assert info.value.problems == ["r.toml: phases.1: keep_best needs eval_every (how often to score the validation split)"]


def test_recipe_fresh_heads_needs_a_head_the_phase_trains(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    tiny_recipe["phases"][1] |= {"train": ["heads.topic"], "fresh_heads": True}
    recipe, _ = validate_recipe(copy.deepcopy(tiny_recipe), registry, "r.toml")
    assert recipe.trained_heads(recipe.phases[1]) == ["topic"]
    tiny_recipe["freeze"] = ["heads.topic"]
    with pytest.raises(RecipeError) as info:
        validate_recipe(copy.deepcopy(tiny_recipe), registry, "r.toml")
    assert info.value.problems == [
        'r.toml: phases.1.fresh_heads: the phase trains no head (add "heads" or "heads.TASK" to phases.1.train, outside '
        "`freeze`), so new heads would stay untrained"
    ]
    tiny_recipe["freeze"] = []
    tiny_recipe["phases"][1]["train"] = ["adapters"]
    with pytest.raises(RecipeError, match=r"phases\.1\.fresh_heads: the phase trains no head"):
        validate_recipe(tiny_recipe, registry, "r.toml")


def test_recipe_phase_tasks_are_the_trained_heads_tasks_in_a_heads_only_phase(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    cases = [(["heads.topic"], ["topic"]), (["heads"], ["sentiment", "topic"]), (["heads.topic", "combiner"], ["sentiment", "topic"])]
    for train, tasks in cases:
        tiny_recipe["phases"][1]["train"] = train
        recipe, _ = validate_recipe(copy.deepcopy(tiny_recipe), registry, "r.toml")
        assert recipe.phase_tasks(recipe.phases[1]) == tasks, train
    assert recipe.phase_tasks(recipe.phases[0]) == ["sentiment", "topic"]


def test_recipe_toml_syntax_error_names_line_and_column(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[run]\nname = 'x'\nseed = = 3\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, registry=registry)
    assert info.value.problems[0].startswith(f"{path}: invalid TOML: ")
    assert "line 3, column" in info.value.problems[0]


def test_recipe_missing_file_says_so(tmp_path: Path, registry: Registry) -> None:
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "nope.toml", registry=registry)


def test_recipe_overrides_parse_values_and_are_validated(tmp_path: Path, tiny_recipe: dict[str, Any], registry: Registry) -> None:
    path = write_toml(tmp_path / "tiny.toml", tiny_recipe)
    recipe, configs, raw = load_recipe(path, ["adapters.topic.rank=16", "phases.1.steps=7", "run.name=renamed"], registry)
    assert configs["adapters.topic"].rank == 16  # type: ignore[attr-defined]
    assert recipe.phases[1].steps == 7 and recipe.run.name == "renamed"
    assert raw["adapters"]["topic"]["rank"] == 16
    with pytest.raises(RecipeError, match=r"adapters\.topic\.rank: input should be greater than 0 \(got -1\)"):
        load_recipe(path, ["adapters.topic.rank=-1"], registry)
    with pytest.raises(RecipeError, match="does not name a place"):
        apply_overrides(copy.deepcopy(tiny_recipe), ["phases.9.steps=1"], "x")
