"""`layer_gates` against PEFT's X-LoRA on the same LoRA library and classifier weights: outputs and the classifier's
gradients within 1e-5, dense and top-k, per site and shared."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, XLoraConfig, get_peft_model

from mtkit import Registry, TaskInfo
from mtkit.model.build import build_model
from mtkit.model.multitask import MultiTaskModel
from mtkit.recipe.resolve import resolve
from mtkit.testing import TINY_LLAMA, tiny_backbone

ALPHAS = {"t0": 8.0, "t1": 4.0, "t2": 12.0}
TEXTS = ["a gripping, funny film", "shares fell sharply on monday after the report"]
CASES = {
    "dense_per_site": ({"per_site": True, "num_layers": 2, "hidden_dim": 16}, {"layerwise_scalings": True, "xlora_depth": 2, "xlora_size": 16}),
    "dense_shared": ({"per_site": False, "num_layers": 1, "temperature": 0.5}, {"layerwise_scalings": False, "xlora_depth": 1, "softmax_temperature": 0.5}),
    "top_k_softmax": (
        {"num_layers": 3, "hidden_dim": 8, "top_k": 2, "softmax": False, "softmax_top_k": True, "scale": 0.7},
        {"layerwise_scalings": True, "xlora_depth": 3, "xlora_size": 8, "top_k_lora": 2, "enable_softmax": False,
         "enable_softmax_topk": True, "global_scaling_weight": 0.7},
    ),
}


def _hf() -> Any:
    return tiny_backbone("llama", seed=0).model


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three random LoRAs (q_proj, v_proj) on the tiny Llama, saved by PEFT."""
    root, generator, folders = tmp_path_factory.mktemp("xlora"), torch.Generator().manual_seed(0), {}
    for name, alpha in ALPHAS.items():
        peft_model = get_peft_model(copy.deepcopy(_hf()), LoraConfig(r=4, lora_alpha=alpha, target_modules=["q_proj", "v_proj"]))
        with torch.no_grad():
            for parameter_name, p in peft_model.named_parameters():
                if "lora_" in parameter_name:
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
        peft_model.save_pretrained(root / name)
        folders[name] = root / name
    return folders


def _ours(registry: Registry, root: Path, params: dict[str, Any]) -> MultiTaskModel:
    recipe = {
        "backbone": dict(TINY_LLAMA),
        "libraries": {"lib": {"type": "lora", "from_peft": str(root)}},
        "combiner": {"type": "layer_gates", "dropout": 0.0, **params},
        "tasks": {"gen": {"dataset": {"type": "rotten_tomatoes"}, "head": {"type": "classification"}}},
        "phases": [{"name": "gates", "steps": 0, "routing": "learned"}],
    }
    model = build_model(resolve(recipe, registry, "xlora.toml"), {"gen": TaskInfo("gen", 0, ("a", "b"))}).eval()
    model.backbone.model.load_state_dict(_hf().state_dict())  # the base weights the LoRAs were saved on
    return model


def _linears(module: torch.nn.Module) -> list[torch.nn.Linear]:
    return [m for m in module.modules() if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize("case", list(CASES))
def test_layer_gates_equals_peft_xlora(case: str, library: dict[str, Path], registry: Registry) -> None:
    params, xlora = CASES[case]
    base = copy.deepcopy(_hf())
    base.config.use_cache = False
    config = XLoraConfig(
        task_type="CAUSAL_LM", hidden_size=32, adapters={str(i): str(p) for i, p in enumerate(library.values())}, xlora_dropout_p=0.0, **xlora
    )
    theirs_model = get_peft_model(base, config).eval()
    classifier = theirs_model.base_model.internal_xlora_classifier
    ours_model = _ours(registry, next(iter(library.values())).parent, params)
    with torch.no_grad():  # the same classifier weights on both sides
        for ours, theirs in zip(_linears(ours_model.combiner.classifier), _linears(classifier), strict=True):
            ours.weight.copy_(theirs.weight)
            ours.bias.copy_(theirs.bias)
    enc = tiny_backbone("llama", seed=0).tokenizer(TEXTS, padding=True, return_tensors="pt")
    theirs = theirs_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True).hidden_states[-1]
    theirs.pow(2).mean().backward()
    with ours_model.use_combiner("combiner"):
        ours = ours_model.run_backbone(enc["input_ids"], enc["attention_mask"], torch.zeros(2, dtype=torch.long)).hidden
    ours.pow(2).mean().backward()
    with torch.no_grad(), ours_model.use_combiner("oracle"):
        single = ours_model.run_backbone(enc["input_ids"], enc["attention_mask"], torch.zeros(2, dtype=torch.long)).hidden
    assert (single - theirs).abs().max() > 1e-2  # the gates really mix the adapters
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    for ours_layer, theirs_layer in zip(_linears(ours_model.combiner.classifier), _linears(classifier), strict=True):
        assert ours_layer.weight.grad.abs().max() > 0
        torch.testing.assert_close(ours_layer.weight.grad, theirs_layer.weight.grad, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ours_layer.bias.grad, theirs_layer.bias.grad, atol=1e-5, rtol=1e-4)


def test_layer_gates_rejects_softmax_top_k_without_top_k(registry: Registry) -> None:
    with pytest.raises(ValueError, match="softmax_top_k applies to the kept top_k weights: set top_k"):
        registry.get("combiner", "layer_gates").config_class.model_validate({"softmax_top_k": True})
