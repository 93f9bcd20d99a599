"""The built-in component names a recipe falls back to: the one place the core names a built-in.

Logic in mtkit never branches on these names; it only fills in what a recipe leaves out.
"""

from __future__ import annotations

__all__ = ["BALANCER", "COMBINER", "METRICS", "ORACLE_COMBINER", "SCHEDULER"]

COMBINER = "oracle"
"""The combiner of a recipe without a [combiner] table."""
ORACLE_COMBINER = "oracle"
"""The combiner that runs at every site while a phase routes by task id (`routing = "oracle"`)."""
SCHEDULER = "proportional"
"""The task scheduler of a recipe without a [scheduler] table."""
METRICS = ("accuracy",)
"""A task's metrics when its table names none."""
BALANCER = "static"
"""How a recipe without a [balancer] table turns task losses into one update (the tasks' `loss_weight`)."""
