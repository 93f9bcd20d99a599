"""A phase's learning-rate schedule: linear warm-up, then constant, linear or cosine decay."""

from __future__ import annotations

import math
from typing import Any

from mtkit.recipe.schema import PhaseSection

__all__ = ["lr_lambda"]


def lr_lambda(phase: PhaseSection) -> Any:
    """The factor on the phase's learning rate at each step (for `torch.optim.lr_scheduler.LambdaLR`)."""
    warmup = int(phase.warmup_ratio * phase.steps)

    def scale(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, phase.steps - warmup)
        if phase.lr_schedule == "linear":
            return max(0.0, 1.0 - progress)
        if phase.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return scale
