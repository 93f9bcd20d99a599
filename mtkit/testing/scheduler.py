"""Contract checks for schedulers: a probability distribution over tasks at every step."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mtkit.testing._common import check_config

__all__ = ["check_scheduler"]


def check_scheduler(cls: type, params: Mapping[str, Any], *, task_sizes: Sequence[int] = (10, 30, 60)) -> None:
    """Check a scheduler class with `params` for tasks of `task_sizes` examples."""
    config = check_config(cls, "scheduler", params)
    scheduler = cls(config, task_sizes=list(task_sizes))
    for num_steps in (1, 2, 7):
        for step in range(num_steps):
            probs = scheduler.probabilities(step, num_steps)
            where = f"probabilities({step}, {num_steps})"
            assert len(probs) == len(task_sizes), f"{where} has {len(probs)} values for {len(task_sizes)} tasks"
            assert all(isinstance(p, float | int) and math.isfinite(p) and p >= 0 for p in probs), f"{where} = {probs}"
            assert math.isclose(sum(probs), 1.0, abs_tol=1e-6), f"{where} sums to {sum(probs)}, not 1"
            assert probs == scheduler.probabilities(step, num_steps), f"{where} is not deterministic"
