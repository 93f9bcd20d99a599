"""The interface (abstract base class) each component kind must subclass, by kind name."""

from __future__ import annotations

from mtkit.api.adapter import Adapter
from mtkit.api.combiner import Combiner
from mtkit.api.interfaces import Backbone, Balancer, DatasetSource, Head, Metric, Scheduler

__all__ = ["INTERFACES"]

INTERFACES: dict[str, type] = {
    "backbone": Backbone,
    "adapter": Adapter,
    "combiner": Combiner,
    "head": Head,
    "scheduler": Scheduler,
    "dataset": DatasetSource,
    "metric": Metric,
    "balancer": Balancer,
}

