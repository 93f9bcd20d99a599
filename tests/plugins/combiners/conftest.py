"""Fixtures for the combiner tests: tiny random BERT models with several random-init LoRA adapters."""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
import torch

from mtkit import Registry, TaskInfo
from mtkit.model.build import build_model
from mtkit.model.multitask import MultiTaskModel
from mtkit.recipe.resolve import resolve, routing_path

TEXTS = ["a gripping, funny film", "shares fell sharply on monday", "dull and far too long", "the minister resigned"]

Builder = Callable[..., MultiTaskModel]


@pytest.fixture()
def build(tiny_recipe: dict[str, Any], registry: Registry) -> Builder:
    """build(combiner_table, adapters=2, ranks=None, **lora_params) -> a model in eval mode, tasks sentiment/topic."""

    def make(combiner: dict[str, Any], adapters: int = 2, ranks: list[int] | None = None, **lora: Any) -> MultiTaskModel:
        recipe = copy.deepcopy(tiny_recipe)
        names = ["sentiment", "topic"] + [f"extra{i}" for i in range(adapters - 2)]
        ranks = ranks or [4] * adapters
        recipe["adapters"] = {
            n: {"type": "lora", "rank": r, "init": "random", "target_modules": ["query", "value"], **lora}
            for n, r in zip(names, ranks, strict=True)
        }
        recipe["combiner"] = combiner
        resolved = resolve(recipe, registry, "test")
        infos = {"sentiment": TaskInfo("sentiment", 0, ("rotten", "fresh")), "topic": TaskInfo("topic", 1, tuple("abcde"))}
        return build_model(resolved, infos).eval()

    return make


def encode(model: MultiTaskModel, texts: list[str] = TEXTS) -> tuple[torch.Tensor, torch.Tensor]:
    enc = model.backbone.tokenizer(texts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


_ROUTING: weakref.WeakKeyDictionary[MultiTaskModel, list[torch.Tensor]] = weakref.WeakKeyDictionary()


def hidden(model: MultiTaskModel, task_ids: torch.Tensor, routing: str = "learned", texts: list[str] = TEXTS) -> torch.Tensor:
    """The last hidden states; the routing the running combiner recorded is kept for `recorded(model)`."""
    ids, mask = encode(model, texts)
    with model.use_combiner(routing_path(routing)), model.recording_routing() as log:
        out = model.run_backbone(ids, mask, task_ids).hidden
    _ROUTING[model] = list(log)
    return out


def recorded(model: MultiTaskModel) -> list[torch.Tensor]:
    """The routing recorded in the last `hidden` call on `model`: one (B, K) tensor per forward pass."""
    return _ROUTING[model]


@pytest.fixture(autouse=True)
def single_thread() -> Any:
    """Tiny tensors gain nothing from threads, and on a busy machine thread hand-offs cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def reference_hidden(model: MultiTaskModel, ids: torch.Tensor, mask: torch.Tensor, weights: Callable[[str, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The last hidden states computed by hand: the bare backbone with, at each LoRA site, y + sum_k w_k s_k B_k A_k x
    for `weights(site, x)` (B, K) or (B, T, K) over the model's adapters (each a LoRA attached at every site)."""
    adapters = list(model.adapters.values())

    def hook(site: str, module: torch.nn.Module, args: tuple[torch.Tensor, ...], y: torch.Tensor) -> torch.Tensor:
        x = args[0]
        w = weights(site, x)
        w = w[:, None, :] if w.dim() == 2 else w
        for k, adapter in enumerate(adapters):
            a, b, scale = adapter.lora_factors(site)
            y = y + w[..., k : k + 1] * scale * (x @ a.T @ b.T)
        return y

    handles = [model.backbone.get_submodule(site).register_forward_hook(partial(hook, site)) for site in model.site_adapters()]
    try:
        with model.adapters_disabled():
            return model.backbone(ids, mask).hidden
    finally:
        for handle in handles:
            handle.remove()


def texts_unread(texts: object) -> None:
    """`FitData.forward_texts` for routines that must read their adapters' task data only: calling it fails."""
    raise AssertionError("this routine reads its adapters' task data, never raw texts")
