"""A library of LoRAs saved by real PEFT on a tiny random BERT, and the same library composed by mtkit.

Each LoRA's update B A has one dominant singular direction (its first rank component is scaled up), so that
PEFT's Arrow, which finds the top right singular vector with 15 power iterations, has converged to the exact
vector mtkit computes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model

from mtkit import Registry, TaskInfo
from mtkit.model.build import build_model
from mtkit.model.multitask import MultiTaskModel
from mtkit.recipe.resolve import resolve, routing_path
from mtkit.testing import TINY_BERT, tiny_backbone

TEXTS = ["a gripping, funny film", "shares fell sharply on monday after the report", "dull", "the minister resigned"]
TASKS = {"sentiment": TaskInfo("sentiment", 0, ("rotten", "fresh")), "topic": TaskInfo("topic", 1, tuple("abcde"))}


def hf_model() -> Any:
    """The tiny BERT's transformers model (the same weights every call)."""
    return tiny_backbone("bert", seed=0).model


def save_library(root: Path, alphas: Mapping[str, float], *, rank: int = 4, seed: int = 0, dominant: float = 4.0) -> dict[str, Path]:
    """One PEFT LoRA folder per name under `root` (query and value), saved by `save_pretrained`."""
    generator = torch.Generator().manual_seed(seed)
    folders = {}
    for name, alpha in alphas.items():
        peft_model = get_peft_model(copy.deepcopy(hf_model()), LoraConfig(r=rank, lora_alpha=alpha, target_modules=["query", "value"]))
        with torch.no_grad():
            for module in peft_model.modules():
                if hasattr(module, "lora_A") and "default" in module.lora_A:
                    a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
                    a.copy_(torch.randn(a.shape, generator=generator) * 0.3)
                    b.copy_(torch.randn(b.shape, generator=generator) * 0.3)
                    a[0] *= dominant
                    b[:, 0] *= dominant
        peft_model.save_pretrained(root / name)
        folders[name] = root / name
    return folders


def encoded() -> dict[str, torch.Tensor]:
    enc = tiny_backbone("bert", seed=0).tokenizer(TEXTS, padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def library_model(registry: Registry, library: Path, combiner: dict[str, Any], adapters: Sequence[str] = ()) -> MultiTaskModel:
    """An mtkit model over the library folder (one adapter per folder) with `combiner`, in eval mode."""
    recipe = {
        "backbone": dict(TINY_BERT),
        "libraries": {"lib": {"type": "lora", "from_peft": str(library)}},
        "combiner": combiner,
        "tasks": {
            name: {"dataset": {"type": "rotten_tomatoes"}, "head": {"type": "classification"}, **({"adapter": adapters[0]} if adapters else {})}
            for name in TASKS
        },
        "phases": [{"name": "compose", "steps": 0, "routing": "learned"}],
    }
    model = build_model(resolve(recipe, registry, "compose.toml"), dict(TASKS)).eval()
    model.backbone.model.load_state_dict(hf_model().state_dict())  # the base weights the PEFT LoRAs were saved on
    return model


def mtkit_hidden(model: MultiTaskModel, routing: str = "learned") -> torch.Tensor:
    batch = encoded()
    with torch.no_grad(), model.use_combiner(routing_path(routing)):
        return model.run_backbone(batch["input_ids"], batch["attention_mask"], torch.zeros(len(TEXTS), dtype=torch.long)).hidden


def peft_hidden(peft_model: Any) -> torch.Tensor:
    peft_model.eval()
    with torch.no_grad():
        return peft_model(**encoded()).last_hidden_state
