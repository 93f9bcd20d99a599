"""Validated recipe -> live objects: look each component up, construct it, wire the model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from mtkit.config import ComponentConfig
from mtkit.data import TaskData, prepare_task_data
from mtkit.errors import MtkitError, RecipeError
from mtkit.interfaces import Adapter, Backbone, Combiner, DatasetSource, Head, Metric, Scheduler, TaskInfo, select_sites
from mtkit.model import MultiTaskModel
from mtkit.recipe import ComponentTable, Recipe
from mtkit.registry import Registry

__all__ = ["BuiltRun", "build_head", "build_metrics", "build_model", "build_run", "build_scheduler", "encode_tasks", "load_sources"]


@dataclass
class BuiltRun:
    recipe: Recipe
    model: MultiTaskModel
    tasks: dict[str, TaskData]
    metrics: dict[str, list[Metric]]
    task_infos: dict[str, TaskInfo]
    registry: Registry
    configs: dict[str, ComponentConfig]
    source: str = "recipe"  # the recipe file, named in errors found while training


@contextmanager
def in_recipe(source: str, path: str | None) -> Iterator[None]:
    """An MtkitError raised inside names the recipe file and the component's key path, as validation errors do.

    A component knows its own keys (``backbone.config_overrides: ...``) but not the file it came from, nor,
    for most messages, where in the recipe it sits. With no path, only the file is added.
    """
    try:
        yield
    except MtkitError as exc:
        message = str(exc)
        if isinstance(exc, RecipeError) or message.startswith(f"{source}: "):
            raise
        if path is not None and not message.startswith(path):
            message = f"{path}: {message}"
        exc.args = (f"{source}: {message}",)  # same error class and attributes (a PluginError keeps its plugin)
        raise


def _make(registry: Registry, kind: str, table: ComponentTable, configs: dict[str, ComponentConfig], path: str) -> tuple[type, ComponentConfig]:
    cls = registry.component_class(kind, table.type)
    config = configs.get(path) or cls.config_class.model_validate(table.params)
    return cls, config


def build_model(
    recipe: Recipe, configs: dict[str, ComponentConfig], registry: Registry, task_infos: dict[str, TaskInfo], source: str = "recipe"
) -> MultiTaskModel:
    """The backbone with adapters, combiner and heads attached (no data needed)."""
    torch.manual_seed(recipe.run.seed)
    cls, config = _make(registry, "backbone", recipe.backbone, configs, "backbone")
    with in_recipe(source, "backbone"):
        backbone: Backbone = cls(config)
    backbone.requires_grad_(False)
    all_sites = backbone.sites()
    adapters: dict[str, Adapter] = {}
    problems = []
    for aid, table in recipe.adapters.items():
        cls, config = _make(registry, "adapter", table, configs, f"adapters.{aid}")
        sites = select_sites(config, all_sites)  # type: ignore[arg-type]
        if not sites:
            examples = ", ".join(sorted(all_sites)[:4])
            problems.append(
                f"{source}: adapters.{aid}.target_modules {list(config.target_modules)!r} matches no Linear site of "  # type: ignore[attr-defined]
                f"backbone {recipe.backbone.type!r} (sites look like: {examples}, ...)"
            )
            continue
        with in_recipe(source, f"adapters.{aid}"):
            adapters[aid] = cls(config, sites=sites, context_size=backbone.hidden_size)
    if problems:
        raise RecipeError(problems)
    combiner_table = recipe.combiner or ComponentTable(type="oracle")
    cls, config = _make(registry, "combiner", combiner_table, configs, "combiner")
    # The combiner sees the sites some adapter attaches to, in backbone order (per-site combiners
    # create their gates or attention there, and know the last one a forward pass reaches).
    used = {name for adapter in adapters.values() for name in adapter.site_names}
    with in_recipe(source, "combiner"):
        combiner: Combiner = cls(
            config,
            adapter_names=list(adapters),
            task_names=list(recipe.tasks),
            sites={name: site for name, site in all_sites.items() if name in used},
            hidden_size=backbone.hidden_size,
        )
    # A loss no combiner provides is a typo; one this combiner lacks has nothing to weight (so a
    # recipe's router phases still run when an ablation swaps the combiner) and is skipped.
    provided = {n for entry in registry.components("combiner") for n in entry.load().aux_loss_names}
    for i, phase in enumerate(recipe.phases):
        unknown = sorted(set(phase.aux_losses) - provided)
        if unknown:
            known = ", ".join(sorted(provided)) or "none"
            problems.append(
                f"{source}: phases.{i}.aux_losses: {', '.join(map(repr, unknown))} is not an auxiliary loss of any "
                f"combiner (known: {known})"
            )
    if problems:
        raise RecipeError(problems)
    heads = {name: build_head(recipe, configs, registry, name, backbone, task_infos[name], source) for name in recipe.tasks}
    task_adapter = {name: recipe.adapter_for_task(name) for name in recipe.tasks}
    return MultiTaskModel(backbone, adapters, combiner, heads, task_adapter)


def build_head(
    recipe: Recipe, configs: dict[str, ComponentConfig], registry: Registry, task: str, backbone: Backbone, info: TaskInfo, source: str = "recipe"
) -> Head:
    """Task `task`'s head, newly initialised from the current torch seed."""
    cls, config = _make(registry, "head", recipe.tasks[task].head, configs, f"tasks.{task}.head")
    with in_recipe(source, f"tasks.{task}.head"):
        head: Head = cls(config, backbone=backbone, task=info)
    return head


def build_scheduler(registry: Registry, table: ComponentTable, task_sizes: list[int]) -> Scheduler:
    cls = registry.component_class("scheduler", table.type)
    return cls(cls.config_class.model_validate(table.params), task_sizes=task_sizes)


def load_sources(
    recipe: Recipe, configs: dict[str, ComponentConfig], registry: Registry, source: str = "recipe"
) -> tuple[dict[str, DatasetSource], dict[str, Any], dict[str, TaskInfo]]:
    """Every task's dataset component, its loaded examples, and the task infos heads are built with."""
    sources: dict[str, DatasetSource] = {}
    loaded: dict[str, Any] = {}
    infos: dict[str, TaskInfo] = {}
    for index, (name, task) in enumerate(recipe.tasks.items()):
        cls, config = _make(registry, "dataset", task.dataset, configs, f"tasks.{name}.dataset")
        with in_recipe(source, f"tasks.{name}.dataset"):
            sources[name] = cls(config)
            loaded[name] = sources[name].load()
        labels = sources[name].label_names
        infos[name] = TaskInfo(name, index, tuple(labels) if labels is not None else None)
    return sources, loaded, infos


def encode_tasks(
    recipe: Recipe,
    model: MultiTaskModel,
    sources: dict[str, DatasetSource],
    loaded: dict[str, Any],
    only: list[str] | None = None,
    source: str = "recipe",
) -> dict[str, TaskData]:
    tokenizer = model.backbone.tokenizer
    data = {}
    for name, task in recipe.tasks.items():
        if only is None or name in only:
            with in_recipe(source, None):  # the messages name the task and the row
                max_length = task.max_length or recipe.run.max_length
                data[name] = prepare_task_data(name, sources[name], loaded[name], model.heads[name], tokenizer, max_length)  # type: ignore[arg-type]
    return data


def build_metrics(recipe: Recipe, configs: dict[str, ComponentConfig], registry: Registry, source: str = "recipe") -> dict[str, list[Metric]]:
    metrics: dict[str, list[Metric]] = {}
    for name, task in recipe.tasks.items():
        metrics[name] = []
        for i, table in enumerate(task.metric_tables()):
            cls, config = _make(registry, "metric", table, configs, f"tasks.{name}.metrics.{i}")
            with in_recipe(source, f"tasks.{name}.metrics.{i}"):
                metrics[name].append(cls(config))
    return metrics


def build_run(recipe: Recipe, configs: dict[str, ComponentConfig], registry: Registry, source: str = "recipe") -> BuiltRun:
    """Load every task's data, build the model, and encode the data with the heads."""
    sources, loaded, infos = load_sources(recipe, configs, registry, source)
    model = build_model(recipe, configs, registry, infos, source)
    data = encode_tasks(recipe, model, sources, loaded, source=source)
    return BuiltRun(recipe, model, data, build_metrics(recipe, configs, registry, source), infos, registry, configs, source)
