"""mtkit: multi-task learning with parameter-efficient adapters, assembled from plugins.

Names that need torch (the component interfaces) load on first access, so that listing and
validating components stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from mtkit.config import KINDS, AdapterConfig, BalancerConfig, CombinerConfig, ComponentConfig, DatasetConfig, RepresentationSource
from mtkit.errors import MtkitError, PluginError, RecipeError, UnknownComponentError
from mtkit.hookspecs import Register, hookimpl, hookspec
from mtkit.plugins import PLUGIN_API_VERSION
from mtkit.registry import Registry, load_registry
from mtkit.resources import package_dir

if TYPE_CHECKING:
    from mtkit import lowrank, peft_format
    from mtkit.adapter import Adapter, Exportable, LoraFactors, LowRank, Mergeable
    from mtkit.combiner import Combiner, CombinerSetup, MergedLora, SiteAdapters
    from mtkit.context import ForwardContext, masked_mean
    from mtkit.deltas import SiteDeltas
    from mtkit.interfaces import (
        TRUNCATED,
        Backbone,
        BackboneOutput,
        Balancer,
        DatasetSource,
        Head,
        HeadOutput,
        HfModelBackbone,
        Metric,
        ModelAccess,
        Scheduler,
        TaskInfo,
        TaskLosses,
        pad_batch,
    )
    from mtkit.sites import Site, select_sites, site_key

__version__ = "0.1.0"

_LAZY = {
    "ForwardContext": "mtkit.context",
    "masked_mean": "mtkit.context",
    **dict.fromkeys(["Adapter", "Exportable", "LoraFactors", "LowRank", "Mergeable"], "mtkit.adapter"),
    **dict.fromkeys(["Combiner", "CombinerSetup", "MergedLora", "SiteAdapters"], "mtkit.combiner"),
    "SiteDeltas": "mtkit.deltas",
    **dict.fromkeys(["Site", "select_sites", "site_key"], "mtkit.sites"),
    **dict.fromkeys(
        [
            "Backbone",
            "BackboneOutput",
            "Balancer",
            "DatasetSource",
            "Head",
            "HeadOutput",
            "HfModelBackbone",
            "Metric",
            "ModelAccess",
            "Scheduler",
            "TaskInfo",
            "TRUNCATED",
            "TaskLosses",
            "pad_batch",
        ],
        "mtkit.interfaces",
    ),
}
_MODULES = {"lowrank": "mtkit.lowrank", "peft_format": "mtkit.peft_format"}
"""Public modules of functions plugins may use (mtkit.lowrank: composing factored adapters; mtkit.peft_format:
reading and writing PEFT LoRA folders)."""

__all__ = [
    "KINDS",
    "PLUGIN_API_VERSION",
    "AdapterConfig",
    "BalancerConfig",
    "CombinerConfig",
    "ComponentConfig",
    "DatasetConfig",
    "MtkitError",
    "PluginError",
    "RecipeError",
    "Register",
    "Registry",
    "RepresentationSource",
    "UnknownComponentError",
    "__version__",
    "hookimpl",
    "hookspec",
    "load_registry",
    "package_dir",
    *sorted(_LAZY),
    *sorted(_MODULES),
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name in _MODULES:
        return import_module(_MODULES[name])
    raise AttributeError(f"module 'mtkit' has no attribute {name!r}")
