"""Sites: the Linear modules of a backbone that adapters attach to, and how an adapter config picks them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from mtkit.api.config import AdapterConfig

__all__ = ["Site", "select_sites", "site_key"]


@dataclass(frozen=True)
class Site:
    """A Linear module of the backbone that adapters may attach to."""

    name: str  # dotted module path inside the backbone
    in_features: int
    out_features: int
    layer: int | None  # index into Backbone.layers(), None outside them


def site_key(site: str) -> str:
    """A module-dict key for a dotted site name (an nn.ModuleDict key cannot hold dots)."""
    return site.replace(".", "__")


def select_sites(config: AdapterConfig, sites: Mapping[str, Site]) -> dict[str, Site]:
    """The sites an adapter config targets: a pattern matches a dotted name that ends with it, `re:` patterns search."""

    def matches(name: str, pattern: str) -> bool:
        if pattern.startswith("re:"):
            return re.search(pattern[3:], name) is not None
        return name == pattern or name.endswith("." + pattern)

    return {
        name: site
        for name, site in sites.items()
        if any(matches(name, p) for p in config.target_modules)
        and (config.layers is None or site.layer in config.layers)
    }
