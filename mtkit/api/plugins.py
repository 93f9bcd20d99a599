"""Plugin loading: the only module that touches pluggy's manager and the `mtkit` entry points.

Each entry point loads on its own. One that fails to import, declares an incompatible plugin API,
or is disabled through the environment is recorded with its status and skipped; it never stops
mtkit unless strict mode is on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Literal

import pluggy

from mtkit.api import hookspecs
from mtkit.api.errors import PluginError

__all__ = [
    "BUILTIN_DISTRIBUTION",
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "PLUGIN_API_VERSION",
    "STRICT_ENV",
    "PluginRecord",
    "get_plugin_manager",
    "strict_mode",
]

ENTRY_POINT_GROUP = "mtkit"
BUILTIN_DISTRIBUTION = "mtkit"
PLUGIN_API_VERSION = 2
"""The plugin API this mtkit provides. A plugin module may set `MTKIT_PLUGIN_API = <int>`; a
different value marks it incompatible and it is skipped."""
API_CHANGES = {
    2: "combiners take `setup=CombinerSetup(...)`, get a SiteAdapters in combine(), keep per-forward state themselves "
    "(ForwardContext has no cache, no oracle_weights), declare aux losses on their config class; adapters may expose "
    "`low_rank` instead of `mix`/`stack`",
}
"""What each plugin API version changed, named when a plugin built for an older one is skipped."""
DISABLE_ENV = "MTKIT_DISABLE_PLUGINS"
"""Comma-separated entry-point or distribution names to skip; `third-party` skips every plugin not
shipped with mtkit."""
STRICT_ENV = "MTKIT_STRICT_PLUGINS"
"""Set to 1 to make any plugin failure an error (for plugin authors)."""

Status = Literal["ok", "failed", "disabled", "incompatible"]


@dataclass
class PluginRecord:
    """What happened to one plugin: where it came from, whether it loaded, and what it registered."""

    name: str
    distribution: str
    version: str
    status: Status = "ok"
    error: str | None = None
    components: list[tuple[str, str]] = field(default_factory=list)

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION

    def label(self) -> str:
        return f"{self.name} ({self.distribution} {self.version})" if self.distribution else self.name


def strict_mode() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _disabled_names() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def _is_disabled(ep: EntryPoint, distribution: str, disabled: set[str]) -> bool:
    if ep.name in disabled or distribution in disabled:
        return True
    return "third-party" in disabled and distribution != BUILTIN_DISTRIBUTION


def _api_problem(module: ModuleType) -> str | None:
    declared = getattr(module, "MTKIT_PLUGIN_API", PLUGIN_API_VERSION)
    if declared == PLUGIN_API_VERSION:
        return None
    changed = "; ".join(f"API {v}: {API_CHANGES[v]}" for v in sorted(API_CHANGES) if isinstance(declared, int) and v > declared)
    return (
        f"plugin API {declared!r} is not supported by this mtkit (it provides API {PLUGIN_API_VERSION}); "
        "install a release of the plugin built for it" + (f" ({changed}; see docs/plugins.md)" if changed else "")
    )


def _sorted_entry_points() -> list[EntryPoint]:
    eps = list(entry_points(group=ENTRY_POINT_GROUP))
    # Built-ins first, so a third-party plugin can never take a built-in name.
    return sorted(eps, key=lambda ep: (_dist_name(ep) != BUILTIN_DISTRIBUTION, _dist_name(ep), ep.name))


def _dist_name(ep: EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else ""


def _unknown_hooks(pm: pluggy.PluginManager, module: ModuleType) -> str | None:
    """What pluggy's `check_pending` finds wrong with the plugin just registered: a hook implementation with no spec
    (a misspelled hook name would otherwise never be called)."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        known = sorted(name for name in dir(hookspecs) if name.startswith(f"{ENTRY_POINT_GROUP}_"))
        unknown = sorted(
            impl.function.__name__
            for impl_name in dir(pm.hook)
            if not impl_name.startswith("_")
            for impl in getattr(pm.hook, impl_name).get_hookimpls()
            if impl.plugin is module and not getattr(pm.hook, impl_name).has_spec()
        )
        names = ", ".join(repr(n) for n in unknown) or str(exc)
        return f"implements unknown hook {names} (known hooks: {', '.join(known)}); check the hook's name"
    return None


def get_plugin_manager(*, load_entry_points: bool = True) -> tuple[pluggy.PluginManager, list[PluginRecord]]:
    """Build a fresh plugin manager and the record of every entry point it tried.

    Raises:
        PluginError: in strict mode, for the first plugin that did not load.
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    records: list[PluginRecord] = []
    if not load_entry_points:
        return pm, records
    disabled = _disabled_names()
    for ep in _sorted_entry_points():
        dist = _dist_name(ep)
        record = PluginRecord(ep.name, dist, ep.dist.version if ep.dist is not None else "")
        records.append(record)
        if _is_disabled(ep, dist, disabled):
            record.status = "disabled"
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must not stop mtkit
            record.status, record.error = "failed", f"import of {ep.value!r} failed: {type(exc).__name__}: {exc}"
        else:
            problem = _api_problem(module)
            if problem is not None:
                record.status, record.error = "incompatible", problem
            else:
                try:
                    pm.register(module, name=ep.name)
                except Exception as exc:
                    record.status, record.error = "failed", f"registration failed: {type(exc).__name__}: {exc}"
                else:
                    unknown = _unknown_hooks(pm, module)
                    if unknown:
                        pm.unregister(module)
                        record.status, record.error = "failed", unknown
        if record.status != "ok" and strict_mode():
            raise PluginError(ep.name, f"plugin {record.label()} {record.status}: {record.error}")
    return pm, records
