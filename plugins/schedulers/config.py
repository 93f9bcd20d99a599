"""Configs of the built-in task schedulers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mtkit import ComponentConfig


class UniformSchedulerConfig(ComponentConfig):
    """Every task equally likely at every step."""


class ProportionalSchedulerConfig(ComponentConfig):
    """Tasks drawn in proportion to their number of training examples."""


class TemperatureSchedulerConfig(ComponentConfig):
    """Tasks drawn with probability proportional to size^(1/temperature)."""

    temperature: float = Field(default=2.0, gt=0, description="1 = proportional; larger flattens towards uniform.")


class RoundRobinSchedulerConfig(ComponentConfig):
    """Tasks take turns, one batch each, in recipe order."""


class CurriculumSchedulerConfig(ComponentConfig):
    """A mixture annealed from one distribution to another over the phase."""

    start: Literal["uniform", "proportional"] = Field(default="uniform", description="Distribution at the first step.")
    end: Literal["uniform", "proportional"] = Field(default="proportional", description="Distribution at the last step.")
    start_weights: list[float] | None = Field(
        default=None, description="Explicit task weights at the first step (recipe task order); overrides start."
    )
    shape: Literal["linear", "cosine"] = Field(default="linear", description="How the mixture moves from start to end.")
