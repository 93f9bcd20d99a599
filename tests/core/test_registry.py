from __future__ import annotations

from typing import Any

import pytest
from mtkit_metrics.config import AccuracyMetricConfig

from mtkit import KINDS, ComponentConfig, PluginError, Registry, UnknownComponentError, hookimpl
from mtkit.api.plugins import get_plugin_manager


def test_registry_lists_builtin_components_of_every_kind(registry: Registry) -> None:
    kinds = {entry.kind for entry in registry.components()}
    assert kinds == set(KINDS)
    for entry in registry.components():
        assert entry.plugin.distribution == "mtkit"
        assert entry.summary, f"{entry.kind} {entry.name} has no summary line"


def test_registry_builtin_entries_load_and_match_their_registration(registry: Registry) -> None:
    for entry in registry.components():
        cls = entry.load()
        assert cls.name == entry.name and cls.config_class is entry.config_class


def test_registry_unknown_component_lists_known_names(registry: Registry) -> None:
    with pytest.raises(UnknownComponentError) as info:
        registry.get("adapter", "lorra")
    assert "'lorra' is not a registered adapter (known: " in str(info.value)
    assert "lora" in str(info.value) and "mtkit list-components --kind adapter" in str(info.value)
    assert isinstance(info.value, LookupError) and not isinstance(info.value, KeyError)


class _Config(ComponentConfig):
    """A test config."""


class _FirstPlugin:
    @hookimpl
    def mtkit_register_components(self, register: Any) -> None:
        register("mtkit_metrics.classification:AccuracyMetric", kind="metric", name="accuracy", config=AccuracyMetricConfig)


class _ClashingPlugin:
    @hookimpl
    def mtkit_register_components(self, register: Any) -> None:
        register("somewhere:Thing", kind="metric", name="unique_one", config=_Config)
        register("somewhere:Other", kind="metric", name="accuracy", config=_Config)


class _RaisingPlugin:
    @hookimpl
    def mtkit_register_components(self, register: Any) -> None:
        raise RuntimeError("boom in hook")


def test_registry_rejects_duplicate_name_and_keeps_first_plugin() -> None:
    pm, _ = get_plugin_manager(load_entry_points=False)
    pm.register(_FirstPlugin(), name="first")
    pm.register(_ClashingPlugin(), name="second")
    registry = Registry.from_plugin_manager(pm)
    status = {p.name: p for p in registry.plugins}
    assert status["first"].status == "ok"
    assert status["second"].status == "failed"
    assert "'accuracy' is already registered by first" in (status["second"].error or "")
    # The clashing plugin is skipped whole: its other component is not half-registered.
    assert registry.names("metric") == ["accuracy"]


def test_registry_records_plugin_whose_hook_raises() -> None:
    pm, _ = get_plugin_manager(load_entry_points=False)
    pm.register(_RaisingPlugin(), name="raiser")
    pm.register(_FirstPlugin(), name="first")
    registry = Registry.from_plugin_manager(pm)
    status = {p.name: p for p in registry.plugins}
    assert status["raiser"].status == "failed" and "boom in hook" in (status["raiser"].error or "")
    assert registry.names("metric") == ["accuracy"]


def test_registry_lazy_entry_is_checked_against_its_interface_on_load() -> None:
    class Wrong:
        @hookimpl
        def mtkit_register_components(self, register: Any) -> None:
            register("mtkit.api.errors:MtkitError", kind="adapter", name="not_an_adapter", config=_Config)

    pm, _ = get_plugin_manager(load_entry_points=False)
    pm.register(Wrong(), name="wrong")
    registry = Registry.from_plugin_manager(pm)
    with pytest.raises(PluginError, match="is not a subclass of mtkit.Adapter"):
        registry.component_class("adapter", "not_an_adapter")


def test_registry_rejects_class_missing_abstract_methods() -> None:
    from mtkit import Metric

    class HalfMetric(Metric):  # compute() not implemented
        name = "half"
        config_class = _Config

    with pytest.raises(PluginError, match="does not implement compute"):
        Registry().add(HalfMetric)


def test_registry_rejects_a_combiner_that_states_no_weights_and_no_combine() -> None:
    from mtkit import Combiner

    class IdleCombiner(Combiner):
        name = "idle"
        config_class = _Config

    with pytest.raises(PluginError, match=r"does not implement weights\(\) or combine\(\)"):
        Registry().add(IdleCombiner)

    class WeightingCombiner(IdleCombiner):
        name = "weighting"

        def weights(self, site: str, x: Any, y: Any, ctx: Any) -> Any:
            return None

    assert Registry().add(WeightingCombiner).name == "weighting"


def test_registry_rejects_bad_names_and_kinds() -> None:
    with pytest.raises(PluginError, match="lowercase snake_case"):
        Registry().add(type("X", (), {"kind": "metric", "name": "Bad-Name", "config_class": _Config}))
    with pytest.raises(PluginError, match="has kind 'widget'"):
        Registry().add(type("Y", (), {"kind": "widget", "name": "y", "config_class": _Config}))
