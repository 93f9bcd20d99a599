"""mtkit: multi-task learning with parameter-efficient adapters, assembled from plugins.

Names that need torch (the component interfaces) load on first access, so that listing and
validating components stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from mtkit.config import KINDS, AdapterConfig, ComponentConfig, DatasetConfig, RepresentationSource
from mtkit.errors import MtkitError, PluginError, RecipeError, UnknownComponentError
from mtkit.hookspecs import Register, hookimpl, hookspec
from mtkit.plugins import PLUGIN_API_VERSION
from mtkit.registry import Registry, load_registry
from mtkit.resources import package_dir

if TYPE_CHECKING:
    from mtkit.context import ForwardContext, masked_mean
    from mtkit.interfaces import (
        Adapter,
        AdapterGroup,
        Backbone,
        BackboneOutput,
        Combiner,
        DatasetSource,
        Exportable,
        Head,
        HeadOutput,
        Mergeable,
        Metric,
        ModelAccess,
        Scheduler,
        Site,
        TaskInfo,
        pad_batch,
        select_sites,
    )

__version__ = "0.1.0"

_LAZY = {
    "ForwardContext": "mtkit.context",
    "masked_mean": "mtkit.context",
    **dict.fromkeys(
        [
            "Adapter",
            "AdapterGroup",
            "Backbone",
            "BackboneOutput",
            "Combiner",
            "DatasetSource",
            "Exportable",
            "Head",
            "HeadOutput",
            "Mergeable",
            "Metric",
            "ModelAccess",
            "Scheduler",
            "Site",
            "TaskInfo",
            "pad_batch",
            "select_sites",
        ],
        "mtkit.interfaces",
    ),
}

__all__ = [
    "KINDS",
    "PLUGIN_API_VERSION",
    "AdapterConfig",
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
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mtkit' has no attribute {name!r}")
