"""Moving a head's Linear layers to and from the tensors PEFT saves through modules_to_save."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mtkit import MtkitError


@torch.no_grad()
def load_tensor(target: Tensor, tensor: Tensor, name: str) -> None:
    """Copy a saved tensor into a head's parameter of the same shape."""
    if tuple(tensor.shape) != tuple(target.shape):
        raise MtkitError(f"tensor {name!r} has shape {tuple(tensor.shape)} but the head's layer is {tuple(target.shape)}; was it trained on this backbone?")
    target.copy_(tensor.to(target.dtype))


def load_linear(linear: nn.Linear, tensors: Mapping[str, Tensor], module: str, fix: str) -> None:
    """Load `module`.weight (and .bias) into `linear`; any other tensor is one this head cannot hold (`fix` says what to do)."""
    other = sorted(set(tensors) - {f"{module}.weight", f"{module}.bias"})
    if other or f"{module}.weight" not in tensors:
        name = other[0] if other else f"{module}.weight"
        raise MtkitError(f"tensor {name!r} from modules_to_save {'does not fit' if other else 'is missing from'} this head, which holds only {module!r}; {fix}")
    load_tensor(linear.weight, tensors[f"{module}.weight"], f"{module}.weight")
    if f"{module}.bias" in tensors:
        load_tensor(linear.bias, tensors[f"{module}.bias"], f"{module}.bias")


def linear_tensors(linear: nn.Linear, module: str) -> dict[str, Tensor]:
    """A Linear's tensors by their path in a task model."""
    return {f"{module}.weight": linear.weight, f"{module}.bias": linear.bias}
