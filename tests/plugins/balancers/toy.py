"""A toy multi-task problem with known task gradients, balanced through mtkit's trainer step (mtkit.train.balancing).

Task k's loss is g_k . shared + head_k^2: linear in the shared parameter, so its gradient there is exactly the row
g_k given, and a step d changes the loss by exactly -lr g_k . d; each task's head is its own parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mtkit import Balancer, load_registry
from mtkit.train.balancing import Balancing, StepOutcome, parameter_owners, split_parameters


class Toy(nn.Module):
    def __init__(self, gradients: Tensor, tasks: Sequence[str]) -> None:
        super().__init__()
        self.gradients, self.tasks = gradients, list(tasks)
        self.shared = nn.Parameter(torch.zeros(gradients.shape[1]))
        self.heads = nn.ParameterDict({t: nn.Parameter(torch.tensor(float(i + 1))) for i, t in enumerate(tasks)})

    def losses(self, tasks: Sequence[str] | None = None) -> dict[str, Tensor]:
        return {t: self.gradients[self.tasks.index(t)] @ self.shared + self.heads[t] ** 2 for t in (tasks or self.tasks)}


def balancer(name: str, tasks: Sequence[str], **params: Any) -> Any:
    entry = load_registry().get("balancer", name)
    return entry.load()(entry.config_class.model_validate(params), task_names=list(tasks))


def balanced_step(
    toy: Toy, name: str, *, present: Sequence[str] | None = None, loss_weights: Mapping[str, float] | None = None, **params: Any
) -> tuple[StepOutcome, Balancer]:
    """One balanced step on the toy (shared and own parameters probed as the trainer probes them); fills .grad."""
    named = list(toy.named_parameters())
    owners = parameter_owners(named, {t: (lambda t=t: toy.losses([t])[t]) for t in toy.tasks})
    weights = dict(loss_weights or dict.fromkeys(toy.tasks, 1.0))
    unit = balancer(name, toy.tasks, **params)
    balancing = Balancing(unit, weights, split_parameters(named, owners), lambda loss: loss.backward())
    toy.zero_grad(set_to_none=True)
    batches = [(t, {"input_ids": torch.zeros(4, 3)}) for t in (present or toy.tasks)]
    torch.manual_seed(0)
    return balancing.step(toy.losses(present), batches, torch.zeros(()), 0, lambda total: None), unit
