"""The built-in task schedulers."""

from __future__ import annotations

import math
from collections.abc import Sequence

from mtkit import MtkitError, Scheduler

from .config import (
    CurriculumSchedulerConfig,
    ProportionalSchedulerConfig,
    RoundRobinSchedulerConfig,
    TemperatureSchedulerConfig,
    UniformSchedulerConfig,
)


def _normalise(values: Sequence[float]) -> list[float]:
    total = sum(values)
    return [v / total for v in values]


class UniformScheduler(Scheduler):
    """Every task equally likely at every step."""

    name = "uniform"
    config_class = UniformSchedulerConfig

    def probabilities(self, step: int, num_steps: int) -> list[float]:
        return _normalise([1.0] * len(self.task_sizes))


class ProportionalScheduler(Scheduler):
    """Tasks drawn in proportion to their number of training examples."""

    name = "proportional"
    config_class = ProportionalSchedulerConfig

    def probabilities(self, step: int, num_steps: int) -> list[float]:
        return _normalise([float(n) for n in self.task_sizes])


class TemperatureScheduler(Scheduler):
    """Tasks drawn with probability proportional to size^(1/temperature)."""

    name = "temperature"
    config_class = TemperatureSchedulerConfig
    config: TemperatureSchedulerConfig

    def probabilities(self, step: int, num_steps: int) -> list[float]:
        return _normalise([n ** (1.0 / self.config.temperature) for n in self.task_sizes])


class RoundRobinScheduler(Scheduler):
    """Tasks take turns, one batch each, in recipe order."""

    name = "round_robin"
    config_class = RoundRobinSchedulerConfig

    def probabilities(self, step: int, num_steps: int) -> list[float]:
        return [1.0 if i == step % len(self.task_sizes) else 0.0 for i in range(len(self.task_sizes))]


class CurriculumScheduler(Scheduler):
    """A mixture annealed from one distribution to another over the phase."""

    name = "curriculum"
    config_class = CurriculumSchedulerConfig
    config: CurriculumSchedulerConfig

    def __init__(self, config: CurriculumSchedulerConfig, *, task_sizes: Sequence[int]) -> None:
        super().__init__(config, task_sizes=task_sizes)
        if config.start_weights is not None and len(config.start_weights) != len(task_sizes):
            raise MtkitError(
                f"start_weights has {len(config.start_weights)} values for {len(task_sizes)} tasks; give one per task"
            )

    def _named(self, which: str) -> list[float]:
        return _normalise([1.0] * len(self.task_sizes) if which == "uniform" else [float(n) for n in self.task_sizes])

    def probabilities(self, step: int, num_steps: int) -> list[float]:
        start = _normalise(self.config.start_weights) if self.config.start_weights else self._named(self.config.start)
        end = self._named(self.config.end)
        t = step / max(1, num_steps - 1)
        if self.config.shape == "cosine":
            t = 0.5 * (1 - math.cos(math.pi * t))
        return [(1 - t) * s + t * e for s, e in zip(start, end, strict=True)]
