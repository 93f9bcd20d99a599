"""mtkit: multi-task learning with parameter-efficient adapters, assembled from plugins.

Everything here comes from mtkit.api, the layer plugin authors build on. Names that need torch (the component
interfaces) load on first access, so that listing and validating components stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from mtkit.api.config import (
    KINDS,
    AdapterConfig,
    BalancerConfig,
    CombinerConfig,
    ComponentConfig,
    DatasetConfig,
    RepresentationSource,
)
from mtkit.api.errors import MtkitError, PluginError, RecipeError, UnknownComponentError
from mtkit.api.hookspecs import Register, hookimpl, hookspec
from mtkit.api.plugins import PLUGIN_API_VERSION
from mtkit.api.registry import Registry, load_registry
from mtkit.api.resources import package_dir

if TYPE_CHECKING:  # for type checkers: the same names as _LAZY_NAMES below
    from mtkit.api import lowrank, peft_format
    from mtkit.api.adapter import Adapter, Exportable, LoraFactors, LowRank, Mergeable
    from mtkit.api.combiner import Combiner, CombinerSetup, MergedLora, RoutesByTask, SiteAdapters
    from mtkit.api.context import FROZEN_TOKENS, ForwardContext, masked_mean
    from mtkit.api.fitting import FitData, FitsItself
    from mtkit.api.interfaces import (
        ROUTING_MASK,
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
        Resampler,
        Scheduler,
        TaskInfo,
        TaskLosses,
        mean_resampler,
        pad_batch,
    )
    from mtkit.api.seeding import component_seed, seeded
    from mtkit.api.site_deltas import SiteDeltas
    from mtkit.api.sites import Site, select_sites, site_key

__version__ = "0.1.0"

_LAZY_NAMES: dict[str, tuple[str, ...]] = {
    "mtkit.api.adapter": ("Adapter", "Exportable", "LoraFactors", "LowRank", "Mergeable"),
    "mtkit.api.combiner": ("Combiner", "CombinerSetup", "MergedLora", "RoutesByTask", "SiteAdapters"),
    "mtkit.api.context": ("FROZEN_TOKENS", "ForwardContext", "masked_mean"),
    "mtkit.api.fitting": ("FitData", "FitsItself"),
    "mtkit.api.interfaces": (
        "ROUTING_MASK",
        "TRUNCATED",
        "Backbone",
        "BackboneOutput",
        "Balancer",
        "DatasetSource",
        "Head",
        "HeadOutput",
        "HfModelBackbone",
        "Metric",
        "ModelAccess",
        "Resampler",
        "Scheduler",
        "TaskInfo",
        "TaskLosses",
        "mean_resampler",
        "pad_batch",
    ),
    "mtkit.api.seeding": ("component_seed", "seeded"),
    "mtkit.api.site_deltas": ("SiteDeltas",),
    "mtkit.api.sites": ("Site", "select_sites", "site_key"),
}
"""Public names that import torch, by the module that defines them (loaded on first access)."""
_LAZY = {name: module for module, names in _LAZY_NAMES.items() for name in names}
_MODULES = {"lowrank": "mtkit.api.lowrank", "peft_format": "mtkit.api.peft_format"}
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
