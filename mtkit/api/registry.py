"""Registry: (kind, name) -> component entry, plus the plugin that registered it.

Entries may be lazy ("module:Class" strings): listing, showing and validating need only the
config class, so they never import torch. The class is imported and checked on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from mtkit.api.config import KINDS, ComponentConfig
from mtkit.api.errors import PluginError, UnknownComponentError
from mtkit.api.plugins import PluginRecord, get_plugin_manager, strict_mode

__all__ = ["ComponentEntry", "Registry", "load_registry"]


@dataclass
class ComponentEntry:
    """One registered component; `target` is the class or a "module:Class" string."""

    kind: str
    name: str
    config_class: type[ComponentConfig]
    target: type | str
    plugin: PluginRecord

    @property
    def summary(self) -> str:
        """The first line of the config class's docstring: the same whether or not the component class has been
        imported yet (a listing must not import it)."""
        doc = self.config_class.__doc__
        return (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""

    def load(self) -> type:
        """Import the component class and check it against its kind's interface."""
        if isinstance(self.target, str):
            module_name, _, attr = self.target.partition(":")
            try:
                cls = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise PluginError(
                    self.plugin.name,
                    f"{self.kind} {self.name!r} of plugin {self.plugin.label()} cannot be imported from "
                    f"{self.target!r}: {exc}",
                ) from exc
            _check_class(cls, self.kind, self.name, self.config_class, self.plugin)
            self.target = cls
        assert isinstance(self.target, type)
        return self.target


def _check_class(cls: Any, kind: str, name: str, config_class: type, plugin: PluginRecord) -> None:
    from mtkit.api.kinds import INTERFACES  # torch is imported only once a class is needed

    interface = INTERFACES[kind]
    where = f"{kind} {name!r} of plugin {plugin.label()}"
    if not (isinstance(cls, type) and issubclass(cls, interface)):
        raise PluginError(plugin.name, f"{where} is not a subclass of mtkit.{interface.__name__}")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if kind == "combiner" and cls.weights is interface.weights and cls.combine is interface.combine:  # type: ignore[attr-defined]
        missing.append("weights() or combine()")
    if kind == "balancer":
        method = "combine_gradients" if getattr(cls, "combines", None) == "gradients" else "combine_losses"
        if getattr(cls, method) is getattr(interface, method):
            missing.append(f"{method}() (its `combines` is {getattr(cls, 'combines', None)!r})")
    if missing:
        raise PluginError(plugin.name, f"{where} does not implement {', '.join(missing)}")
    if getattr(cls, "name", None) != name or getattr(cls, "config_class", None) is not config_class:
        raise PluginError(plugin.name, f"{where}: its `name`/`config_class` ClassVars differ from its registration")


@dataclass
class Registry:
    """Registered components by kind and name, and the record of every plugin."""

    entries: dict[tuple[str, str], ComponentEntry] = field(default_factory=dict)
    plugins: list[PluginRecord] = field(default_factory=list)

    @classmethod
    def from_plugin_manager(cls, pm: pluggy.PluginManager, records: Iterable[PluginRecord] = ()) -> Registry:
        """Call each plugin's hookimpl on its own, so every entry knows its plugin.

        A plugin whose registrations are invalid or clash with an earlier plugin is marked failed
        and none of its components are kept.
        """
        registry = cls(plugins=list(records))
        by_name = {r.name: r for r in registry.plugins}
        for impl in pm.hook.mtkit_register_components.get_hookimpls():
            record = by_name.get(impl.plugin_name)
            if record is None:
                record = PluginRecord(impl.plugin_name, "", "")
                registry.plugins.append(record)
            registry._register_plugin(impl.function, record)
        return registry

    def _register_plugin(self, hook: Any, record: PluginRecord) -> None:
        pending: list[ComponentEntry] = []

        def register(
            component: type | str, *, kind: str | None = None, name: str | None = None, config: type | None = None
        ) -> None:
            pending.append(_make_entry(component, kind, name, config, record))

        try:
            hook(register=register)
            seen: set[tuple[str, str]] = set()
            for entry in pending:
                key = (entry.kind, entry.name)
                if key in self.entries or key in seen:
                    owner = self.entries[key].plugin.label() if key in self.entries else "itself"
                    raise PluginError(
                        record.name, f"{entry.kind} {entry.name!r} is already registered by {owner}"
                    )
                seen.add(key)
        except Exception as exc:
            record.status = "failed"
            record.error = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
            if strict_mode():
                raise PluginError(record.name, f"plugin {record.label()} failed: {record.error}") from exc
            return
        for entry in pending:
            self.entries[(entry.kind, entry.name)] = entry
            record.components.append((entry.kind, entry.name))

    def add(self, component: type, *, plugin: str = "test") -> ComponentEntry:
        """Register one class directly (tests and notebooks); checks it like a plugin's."""
        record = PluginRecord(plugin, "", "")
        entry = _make_entry(component, None, None, None, record)
        if (entry.kind, entry.name) in self.entries:
            raise PluginError(plugin, f"{entry.kind} {entry.name!r} is already registered")
        self.entries[(entry.kind, entry.name)] = entry
        return entry

    def components(self, kind: str | None = None) -> list[ComponentEntry]:
        return sorted(
            (e for e in self.entries.values() if kind is None or e.kind == kind), key=lambda e: (e.kind, e.name)
        )

    def names(self, kind: str) -> list[str]:
        return sorted(name for k, name in self.entries if k == kind)

    def get(self, kind: str, name: str) -> ComponentEntry:
        if kind not in KINDS:
            raise UnknownComponentError(f"{kind!r} is not a component kind (known: {', '.join(sorted(KINDS))})")
        entry = self.entries.get((kind, name))
        if entry is None:
            known = ", ".join(self.names(kind)) or "none"
            raise UnknownComponentError(
                f"{name!r} is not a registered {kind} (known: {known}); see 'mtkit list-components --kind {kind}'"
            )
        return entry

    def component_class(self, kind: str, name: str) -> type:
        return self.get(kind, name).load()


def _make_entry(
    component: type | str, kind: str | None, name: str | None, config: type | None, record: PluginRecord
) -> ComponentEntry:
    if isinstance(component, type):
        kind = kind or getattr(component, "kind", None)
        name = name or getattr(component, "name", None)
        config = config or getattr(component, "config_class", None)
    elif not (isinstance(component, str) and ":" in component):
        raise PluginError(record.name, f"register() takes a class or a 'module:Class' string, got {component!r}")
    if kind not in KINDS:
        raise PluginError(record.name, f"{component!r} has kind {kind!r} (known: {', '.join(sorted(KINDS))})")
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
        raise PluginError(record.name, f"{component!r} needs a lowercase snake_case name, got {name!r}")
    if not (isinstance(config, type) and issubclass(config, ComponentConfig)):
        raise PluginError(record.name, f"{kind} {name!r} needs a config class derived from mtkit.ComponentConfig")
    entry = ComponentEntry(kind, name, config, component, record)
    if isinstance(component, type):
        _check_class(component, kind, name, config, record)
    return entry


_CACHE: dict[str, Registry] = {}


def load_registry(*, refresh: bool = False) -> Registry:
    """The registry of every installed plugin (built once per process unless `refresh`)."""
    if refresh or "default" not in _CACHE:
        pm, records = get_plugin_manager()
        _CACHE["default"] = Registry.from_plugin_manager(pm, records)
    return _CACHE["default"]
