"""Phase parameter selectors -> parameter groups with learning-rate multipliers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from mtkit.model import MultiTaskModel

__all__ = ["ParamGroup", "select_parameters"]


@dataclass
class ParamGroup:
    params: list[nn.Parameter]
    lr_scale: float
    label: str


def _selected_modules(model: MultiTaskModel, selector: str) -> list[tuple[nn.Module, str]]:
    head, _, rest = selector.partition(".")
    if head == "adapters":
        return [(model.adapters[rest], "adapters")] if rest else [(model.adapters, "adapters")]
    if head == "heads":
        return [(model.heads[rest], "heads")] if rest else [(model.heads, "heads")]
    if head == "combiner":
        return [(model.combiner, "combiner")]
    layers = model.backbone.layers()
    if rest == "embeddings":
        return [(model.backbone.embeddings(), "backbone.embeddings")]
    if rest.startswith("layers."):
        lo, _, hi = rest.removeprefix("layers.").partition("-")
        return [(layers[i], f"backbone.layers.{i}") for i in range(int(lo), int(hi or lo) + 1) if i < len(layers)]
    return [(model.backbone, "backbone")]


def select_parameters(
    model: MultiTaskModel,
    selectors: Sequence[str],
    *,
    head_lr_multiplier: float = 1.0,
    layer_lr_decay: float = 1.0,
    frozen: Sequence[str] = (),
) -> list[ParamGroup]:
    """Parameters the selectors name (less those `frozen` names), grouped by learning-rate scale.

    Heads get `head_lr_multiplier`; backbone layer i of n gets `layer_lr_decay ** (n - 1 - i)`,
    the embeddings and other backbone parameters `layer_lr_decay ** n`.
    """
    excluded = {id(p) for selector in frozen for module, _ in _selected_modules(model, selector) for p in module.parameters()}
    layers = model.backbone.layers()
    layer_of = {id(p): i for i, layer in enumerate(layers) for p in layer.parameters()}
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    head_ids = {id(p) for p in model.heads.parameters()}
    chosen: dict[int, nn.Parameter] = {}
    for selector in selectors:
        for module, _ in _selected_modules(model, selector):
            for p in module.parameters():
                if id(p) not in excluded:
                    chosen.setdefault(id(p), p)
    groups: dict[float, ParamGroup] = {}
    for pid, p in chosen.items():
        if pid in head_ids:
            scale, label = head_lr_multiplier, "heads"
        elif pid in layer_of:
            scale, label = layer_lr_decay ** (len(layers) - 1 - layer_of[pid]), f"layer {layer_of[pid]}"
        elif pid in backbone_ids:
            scale, label = layer_lr_decay ** len(layers), "backbone"
        else:
            scale, label = 1.0, "adapters/combiner"
        groups.setdefault(scale, ParamGroup([], scale, label)).params.append(p)
    return sorted(groups.values(), key=lambda g: -g.lr_scale)
