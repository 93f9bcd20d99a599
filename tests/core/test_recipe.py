from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from mtkit import RecipeError, Registry
from mtkit.recipe.overrides import apply_overrides
from mtkit.recipe.resolve import load_recipe, resolve
from tests.conftest import write_toml


def test_recipe_tiny_recipe_validates(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    resolved = resolve(tiny_recipe, registry, "tiny.toml")
    assert resolved.recipe.adapter_for_task("topic") == "topic"
    assert resolved.adapters()["sentiment"].config.rank == 4  # type: ignore[attr-defined]
    assert set(resolved.nodes) >= {"backbone", "combiner", "scheduler", "tasks.topic.dataset", "tasks.topic.metrics.0"}
    assert resolved.phases[1].scheduler.type == "proportional" and resolved.phases[0].combiner.type == "oracle"


def test_recipe_defaults_fill_the_component_tables_a_recipe_leaves_out(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    del tiny_recipe["combiner"]
    del tiny_recipe["tasks"]["topic"]["metrics"]
    resolved = resolve(tiny_recipe, registry, "tiny.toml")
    assert resolved.combiner().type == "oracle" and [m.type for m in resolved.metrics("topic")] == ["accuracy"]
    assert "combiner" not in tiny_recipe  # the raw recipe (what a run directory saves) is left as written


def test_recipe_reports_all_problems_with_key_paths(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    bad = copy.deepcopy(tiny_recipe)
    bad["run"]["nmae"] = "oops"  # misspelled key
    bad["run"]["batch_size"] = "big"  # wrong type
    bad["adapters"]["sentiment"]["rank"] = -4  # out of range
    bad["combiner"]["type"] = "routr"  # unknown component
    with pytest.raises(RecipeError) as info:
        resolve(bad, registry, "bad.toml")
    problems = info.value.problems
    assert len(problems) == 4, problems
    text = "\n".join(problems)
    assert "bad.toml: run.nmae: unknown key; did you mean 'name'?" in text
    assert "bad.toml: run.batch_size: input should be a valid integer" in text
    assert "bad.toml: adapters.sentiment.rank: input should be greater than 0 (got -4)" in text
    assert "bad.toml: combiner.type 'routr' is not a registered combiner (known: arrow, cat, fusion_attention, gating, layer_gates, lorahub, merge, oracle, phatgoose, random, retrieval, router, uniform, weighted)" in text


def test_recipe_unknown_key_inside_component_lists_allowed_fields(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    tiny_recipe["adapters"]["topic"]["rnak"] = 8
    with pytest.raises(RecipeError) as info:
        resolve(tiny_recipe, registry, "r.toml")
    assert info.value.problems == [
        "r.toml: adapters.topic.rnak: unknown key; did you mean 'rank'? (allowed: alpha, dropout, from_peft, init, layers, rank, target_modules)"
    ]


def test_recipe_rejects_selectors_and_references_that_match_nothing(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    tiny_recipe["phases"][0]["train"] = ["adapters.sentimnt", "backbone.layers.1-2"]
    tiny_recipe["tasks"]["topic"]["adapter"] = "nope"
    with pytest.raises(RecipeError) as info:
        resolve(tiny_recipe, registry, "r.toml")
    text = info.value.problems[0]
    assert "phases.0.train: selector 'adapters.sentimnt' names no adapter of the recipe (known: sentiment, topic)" in text
    assert "tasks.topic.adapter 'nope' is not an adapter id" in text
    tiny_recipe["tasks"]["topic"]["adapter"] = "topic"
    tiny_recipe["phases"][0]["train"] = ["backbone.layers.5-2", "heads.nope"]
    tiny_recipe["phases"][1]["task_adapters"] = {"topic": "nope", "typo": "topic"}
    with pytest.raises(RecipeError) as info:
        resolve(tiny_recipe, registry, "r.toml")
    text = info.value.problems[0]
    assert "selector 'backbone.layers.5-2' names layers 5 down to 2; write the range low-high (backbone.layers.2-5)" in text
    assert "selector 'heads.nope' names no task of the recipe (known: sentiment, topic)" in text
    assert "phases.1.task_adapters.topic: 'nope' is not an adapter id (known: sentiment, topic)" in text
    assert "phases.1.task_adapters.typo: not a task of the recipe (known: sentiment, topic)" in text


def test_recipe_validation_checks_need_validation_splits(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    tiny_recipe["tasks"]["sentiment"]["dataset"]["validation_size"] = 0.1
    tiny_recipe["phases"][1]["eval_every"] = 2
    with pytest.raises(RecipeError) as info:
        resolve(copy.deepcopy(tiny_recipe), registry, "r.toml")
    assert info.value.problems == [
        "r.toml: phases.1.eval_every scores validation splits, but tasks.topic.dataset has none; "
        "set tasks.topic.dataset.validation_size (e.g. 0.1)"
    ]
    tiny_recipe["tasks"]["topic"]["dataset"]["validation_size"] = 0.1
    resolved = resolve(copy.deepcopy(tiny_recipe), registry, "r.toml")
    assert resolved.recipe.phases[1].eval_every == 2 and resolved.dataset("topic").config.validation_size == 0.1  # type: ignore[attr-defined]
    del tiny_recipe["phases"][1]["eval_every"]
    tiny_recipe["phases"][1]["keep_best"] = "mean"
    with pytest.raises(RecipeError) as info:
        resolve(tiny_recipe, registry, "r.toml")
    assert info.value.problems == ["r.toml: phases.1: keep_best needs eval_every (how often to score the validation split)"]


def test_recipe_fresh_heads_needs_a_head_the_phase_trains(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    tiny_recipe["phases"][1] |= {"train": ["heads.topic"], "fresh_heads": True}
    recipe = resolve(copy.deepcopy(tiny_recipe), registry, "r.toml").recipe
    assert recipe.trained_heads(recipe.phases[1]) == ["topic"]
    tiny_recipe["freeze"] = ["heads.topic"]
    with pytest.raises(RecipeError) as info:
        resolve(copy.deepcopy(tiny_recipe), registry, "r.toml")
    assert info.value.problems == [
        'r.toml: phases.1.fresh_heads: the phase trains no head (add "heads" or "heads.TASK" to phases.1.train, outside '
        "`freeze`), so new heads would stay untrained"
    ]
    tiny_recipe["freeze"] = []
    tiny_recipe["phases"][1]["train"] = ["adapters"]
    with pytest.raises(RecipeError, match=r"phases\.1\.fresh_heads: the phase trains no head"):
        resolve(tiny_recipe, registry, "r.toml")


def test_recipe_phase_tasks_are_the_trained_heads_tasks_in_a_heads_only_phase(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    tiny_recipe["combiner"] = {"type": "router"}  # a combiner with parameters to train
    cases = [(["heads.topic"], ["topic"]), (["heads"], ["sentiment", "topic"]), (["heads.topic", "combiner"], ["sentiment", "topic"])]
    for train, tasks in cases:
        tiny_recipe["phases"][1]["train"] = train
        recipe = resolve(copy.deepcopy(tiny_recipe), registry, "r.toml").recipe
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
    resolved = load_recipe(path, ["adapters.topic.rank=16", "phases.1.steps=7", "run.name=renamed"], registry)
    assert resolved.adapters()["topic"].config.rank == 16  # type: ignore[attr-defined]
    assert resolved.recipe.phases[1].steps == 7 and resolved.recipe.run.name == "renamed"
    assert resolved.raw["adapters"]["topic"]["rank"] == 16
    with pytest.raises(RecipeError, match=r"adapters\.topic\.rank: input should be greater than 0 \(got -1\)"):
        load_recipe(path, ["adapters.topic.rank=-1"], registry)
    with pytest.raises(RecipeError, match="does not name a place"):
        apply_overrides(copy.deepcopy(tiny_recipe), ["phases.9.steps=1"], "x")


def test_recipe_override_close_to_an_existing_table_is_a_typo(tiny_recipe: dict[str, Any]) -> None:
    with pytest.raises(RecipeError, match=r"override 'adapters.sentimnt.rank': the recipe has no 'adapters.sentimnt'; did you mean 'sentiment'\?"):
        apply_overrides(copy.deepcopy(tiny_recipe), ["adapters.sentimnt.rank=16"], "x")
    added = apply_overrides(copy.deepcopy(tiny_recipe), ["adapters.sentiment2.type=lora"], "x")  # a new component on purpose
    assert added["adapters"]["sentiment2"] == {"type": "lora"}


def test_recipe_aux_loss_names_are_checked_without_importing_combiners(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    tiny_recipe["phases"][1]["aux_losses"] = {"load_balance": 0.01}  # a router loss; the recipe's combiner is oracle
    assert resolve(copy.deepcopy(tiny_recipe), registry, "r.toml").combiner().type == "oracle"
    tiny_recipe["phases"][1]["aux_losses"] = {"load_balanse": 0.01}
    with pytest.raises(RecipeError) as info:
        resolve(tiny_recipe, registry, "r.toml")
    (problem,) = info.value.problems
    assert problem.startswith("r.toml: phases.1.aux_losses.load_balanse: no combiner or adapter declares this auxiliary loss; did you mean 'load_balance'?")
    assert "(known: consistency, efficiency, entropy, expert_balance, load_balance, task_supervision, value_identity)" in problem


def test_recipe_bounds_and_patterns_are_checked_in_validation(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    tiny_recipe["run"]["seed"] = 2**70
    tiny_recipe["adapters"]["topic"]["target_modules"] = ["re:query(["]
    with pytest.raises(RecipeError) as info:
        resolve(tiny_recipe, registry, "r.toml")
    text = "\n".join(info.value.problems)
    assert "r.toml: run.seed: input should be less than or equal to 4294967295" in text
    assert "r.toml: adapters.topic.target_modules: pattern 're:query([' is not a valid regular expression" in text


def test_recipe_empty_metrics_list_is_rejected_naming_the_key(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    tiny_recipe["tasks"]["topic"]["metrics"] = []
    with pytest.raises(RecipeError) as info:
        resolve(tiny_recipe, registry, "tiny.toml")
    assert "tiny.toml: tasks.topic.metrics: an empty list scores nothing" in str(info.value)
