"""hf_encoder (and scratch_transformer) layers: selectors for layer-wise LR and progressive unfreezing, adapter sites."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from mtkit import Registry, TaskInfo
from mtkit.model.build import build_model
from mtkit.model.param_groups import select_parameters
from mtkit.recipe.resolve import resolve
from mtkit.train.run import run_recipe
from tests.conftest import TINY_BERT, write_toml
from tests.plugins.components_support import TINY_SCRATCH, tiny_bert, tiny_recipe_for  # noqa: F401  (fixture)

TASKS = {"sentiment": {"dataset": {"type": "rotten_tomatoes", "max_train_examples": 16, "max_eval_examples": 8}, "head": {"type": "classification"}}}


def _model(registry: Registry, backbone: dict[str, Any]) -> Any:
    resolved = resolve(tiny_recipe_for(copy.deepcopy(TASKS), backbone), registry, "test")
    return build_model(resolved, {"sentiment": TaskInfo("sentiment", 0, ("rotten", "fresh"))})


def test_hf_encoder_sites_cover_attention_and_ffn_linears(tiny_bert: Any) -> None:
    sites = tiny_bert.sites()
    layer0 = {name.split("layer.0.", 1)[1] for name in sites if ".layer.0." in name}
    assert layer0 == {"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense"}
    assert {s.layer for s in sites.values()} == {0, 1}
    assert len(tiny_bert.layers()) == 2 and tiny_bert.embeddings()(torch.tensor([[101, 102]])).shape == (1, 2, 32)


@pytest.mark.parametrize("backbone", [TINY_BERT, TINY_SCRATCH], ids=["hf_encoder", "scratch_transformer"])
def test_layer_selector_picks_exactly_that_layers_parameters(registry: Registry, backbone: dict[str, Any]) -> None:
    model = _model(registry, backbone)
    layers = model.backbone.layers()
    groups = select_parameters(model, ["backbone.layers.1-1"])
    assert len(groups) == 1 and {id(p) for p in groups[0].params} == {id(p) for p in layers[1].parameters()}
    both = select_parameters(model, ["backbone.layers.0-1"])
    assert {id(p) for g in both for p in g.params} == {id(p) for layer in layers for p in layer.parameters()}
    embeddings = select_parameters(model, ["backbone.embeddings"])
    assert {id(p) for g in embeddings for p in g.params} == {id(p) for p in model.backbone.embeddings().parameters()}


@pytest.mark.parametrize("backbone", [TINY_BERT, TINY_SCRATCH], ids=["hf_encoder", "scratch_transformer"])
def test_layer_lr_decay_scales_each_layer(registry: Registry, backbone: dict[str, Any]) -> None:
    model = _model(registry, backbone)
    groups = select_parameters(model, ["backbone", "heads"], head_lr_multiplier=3.0, layer_lr_decay=0.5)
    scale = {id(p): g.lr_scale for g in groups for p in g.params}
    layers = model.backbone.layers()
    assert all(scale[id(p)] == 1.0 for p in layers[1].parameters())  # the top layer trains at the full lr
    assert all(scale[id(p)] == 0.5 for p in layers[0].parameters())
    assert all(scale[id(p)] == 0.25 for p in model.backbone.embeddings().parameters())  # decay ** n_layers
    assert all(scale[id(p)] == 3.0 for p in model.heads.parameters())
    assert len(scale) == sum(1 for _ in model.backbone.parameters()) + sum(1 for _ in model.heads.parameters())


def test_progressive_unfreezing_trains_only_the_selected_layers(tmp_path: Path, registry: Registry) -> None:
    recipe = tiny_recipe_for(copy.deepcopy(TASKS), steps=2)
    recipe["phases"] = [
        {"name": "heads", "steps": 2, "train": ["heads"], "lr": 1e-2, "evaluate": False},
        {"name": "top", "steps": 2, "train": ["backbone.layers.1", "heads"], "lr": 1e-2, "evaluate": False},
        {"name": "all_layers", "steps": 2, "train": ["backbone.layers.0-1", "heads"], "lr": 1e-2, "layer_lr_decay": 0.5},
    ]
    recipe["run"]["output_dir"] = str(tmp_path / "run")
    run_dir = run_recipe(write_toml(tmp_path / "r.toml", recipe), registry=registry).path
    saved = load_file(str(run_dir / "model.safetensors"))
    initial = _model(registry, TINY_BERT).state_dict()  # same seed, same random init
    layer = "backbone.model.encoder.layer"
    assert any(k.startswith(f"{layer}.0.") for k in saved) and any(k.startswith(f"{layer}.1.") for k in saved)
    assert not any(k.startswith("backbone.model.embeddings") for k in saved)  # never unfrozen, so not saved
    for index in (0, 1):
        key = f"{layer}.{index}.attention.self.query.weight"
        assert not torch.equal(saved[key], initial[key]), f"layer {index} did not train"
    assert json.loads((run_dir / "results.json").read_text())["all_layers"]["oracle"]["sentiment"]["accuracy"] >= 0

