"""Phase selectors, freezing and layer-wise learning rates on a tiny random BERT."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mtkit import Registry
from mtkit.model.param_groups import select_parameters
from tests.core.test_model import make_model


def _ids(groups: Any) -> set[int]:
    return {id(p) for g in groups for p in g.params}


def test_selectors_pick_named_parts_and_freeze_excludes(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    model = make_model(tiny_recipe, registry)
    heads = {id(p) for p in model.heads.parameters()}
    sentiment = {id(p) for p in model.heads["sentiment"].parameters()}
    topic_adapter = {id(p) for p in model.adapters["topic"].parameters()}
    layer1 = {id(p) for p in model.backbone.layers()[1].parameters()}
    assert _ids(select_parameters(model, ["heads"])) == heads
    assert _ids(select_parameters(model, ["adapters.topic"])) == topic_adapter
    assert _ids(select_parameters(model, ["backbone.layers.1-1"])) == layer1
    assert _ids(select_parameters(model, ["heads", "backbone.layers.1"], frozen=["heads.sentiment"])) == (heads - sentiment) | layer1
    assert select_parameters(model, ["backbone"], frozen=["backbone"]) == []


def test_selectors_layer_wise_decay_and_head_multiplier(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    model = make_model(tiny_recipe, registry)
    groups = select_parameters(model, ["backbone", "heads"], head_lr_multiplier=10.0, layer_lr_decay=0.5)
    scale_of = {id(p): g.lr_scale for g in groups for p in g.params}
    layers = model.backbone.layers()
    assert {scale_of[id(p)] for p in layers[1].parameters()} == {1.0}  # top layer: full rate
    assert {scale_of[id(p)] for p in layers[0].parameters()} == {0.5}
    assert {scale_of[id(p)] for p in model.backbone.embeddings().parameters()} == {0.25}
    assert {scale_of[id(p)] for p in model.heads.parameters()} == {10.0}


def test_selectors_freeze_everything_makes_phases_evaluate_only(tiny_recipe: dict[str, Any], registry: Registry, tmp_path: Any) -> None:
    import json

    from mtkit.train.run import run_recipe
    from tests.conftest import write_toml

    recipe = copy.deepcopy(tiny_recipe)
    recipe["freeze"] = ["adapters", "heads"]
    recipe["run"]["output_dir"] = str(tmp_path / "frozen")
    run_dir = run_recipe(write_toml(tmp_path / "r.toml", recipe)).path
    assert json.loads((run_dir / "parameters.json").read_text())["trained"] == 0
    assert not [line for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    with pytest.raises(Exception, match="freeze: selector 'heads.nope' names no task of the recipe"):
        recipe["freeze"] = ["heads.nope"]
        run_recipe(write_toml(tmp_path / "r2.toml", recipe))


@pytest.mark.parametrize(
    ("train", "combiner", "why"),
    [
        (["backbone.layers.99"], "oracle", "the backbone has layers 0-1"),
        (["combiner"], "oracle", "combiner 'oracle' has no parameters"),
        (["adapters", "combiner"], "uniform", "combiner 'uniform' has no parameters"),
    ],
)
def test_selectors_naming_no_parameter_of_the_built_model_are_errors(
    tiny_recipe: dict[str, Any], registry: Registry, train: list[str], combiner: str, why: str
) -> None:
    from mtkit import RecipeError

    recipe = copy.deepcopy(tiny_recipe)
    recipe["combiner"] = {"type": combiner}
    recipe["phases"][1]["train"] = train
    with pytest.raises(RecipeError) as info:
        make_model(recipe, registry)
    (problem,) = info.value.problems
    assert problem == (
        f"test: phases.1.train: selector {train[-1]!r} names no parameter ({why}); remove it, or set phases.1.steps = 0 to only "
        "evaluate in that phase"
    )
    recipe["phases"][1]["steps"] = 0  # an evaluation-only phase may keep the selector
    make_model(recipe, registry)
