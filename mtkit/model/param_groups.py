"""Selectors -> the model's parameters, grouped by learning-rate scale."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from mtkit.model.multitask import MultiTaskModel
from mtkit.recipe.resolve import COMBINER_PATH
from mtkit.recipe.selectors import Selector, parse_selector

__all__ = ["ParamGroup", "select_parameters", "selector_matches"]


@dataclass
class ParamGroup:
    params: list[nn.Parameter]
    lr_scale: float


def _modules(model: MultiTaskModel, sel: Selector) -> list[nn.Module]:
    if sel.part == "adapters":
        return [model.adapters[sel.name]] if sel.name else [model.adapters]
    if sel.part == "heads":
        return [model.heads[sel.name]] if sel.name else [model.heads]
    if sel.part == "combiner":
        return [model.combiners[COMBINER_PATH]]
    if sel.embeddings:
        return [model.backbone.embeddings()]
    if sel.layers is not None:
        layers = model.backbone.layers()
        lo, hi = sel.layers
        return [layers[i] for i in range(lo, min(hi, len(layers) - 1) + 1)]
    return [model.backbone]


def selector_matches(model: MultiTaskModel, selector: str | Selector) -> list[nn.Parameter]:
    """The parameters one selector names (empty when it names nothing: layers past the last, a combiner without any)."""
    parsed = selector if isinstance(selector, Selector) else parse_selector(selector)
    return [p for module in _modules(model, parsed) for p in module.parameters()]


def select_parameters(
    model: MultiTaskModel,
    selectors: Sequence[str | Selector],
    *,
    head_lr_multiplier: float = 1.0,
    layer_lr_decay: float = 1.0,
    frozen: Sequence[str] = (),
) -> list[ParamGroup]:
    """Parameters the selectors name (less those `frozen` names), grouped by learning-rate scale.

    Heads get `head_lr_multiplier`; backbone layer i of n gets `layer_lr_decay ** (n - 1 - i)`,
    the embeddings and other backbone parameters `layer_lr_decay ** n`.
    """
    excluded = {id(p) for selector in frozen for p in selector_matches(model, selector)}
    layers = model.backbone.layers()
    layer_of = {id(p): i for i, layer in enumerate(layers) for p in layer.parameters()}
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    head_ids = {id(p) for p in model.heads.parameters()}
    chosen: dict[int, nn.Parameter] = {}
    for selector in selectors:
        for p in selector_matches(model, selector):
            if id(p) not in excluded:
                chosen.setdefault(id(p), p)
    groups: dict[float, ParamGroup] = {}
    for pid, p in chosen.items():
        if pid in head_ids:
            scale = head_lr_multiplier
        elif pid in layer_of:
            scale = layer_lr_decay ** (len(layers) - 1 - layer_of[pid])
        elif pid in backbone_ids:
            scale = layer_lr_decay ** len(layers)
        else:
            scale = 1.0  # adapters and the combiner
        groups.setdefault(scale, ParamGroup([], scale)).params.append(p)
    return sorted(groups.values(), key=lambda g: -g.lr_scale)
