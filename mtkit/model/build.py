"""A resolved recipe -> live objects: construct each node's component, wire the model, load and encode the data."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import datasets

from mtkit.api.adapter import Adapter
from mtkit.api.combiner import Combiner, CombinerSetup
from mtkit.api.errors import MtkitError, RecipeError
from mtkit.api.interfaces import Backbone, DatasetSource, Head, Metric, Scheduler, TaskInfo
from mtkit.api.seeding import component_seed, seeded
from mtkit.api.sites import select_sites
from mtkit.data.tasks import TaskData, check_rows, encode_examples, prepare_task_data
from mtkit.model.multitask import MultiTaskModel, layer_index
from mtkit.model.peft_import import import_peft_parts
from mtkit.recipe.resolve import Node, ResolvedPhase, ResolvedRecipe
from mtkit.recipe.schema import Recipe

__all__ = [
    "BuiltRun",
    "build_component",
    "build_head",
    "build_metrics",
    "build_model",
    "build_probes",
    "build_run",
    "build_scheduler",
    "combiner_setup",
    "encode_tasks",
    "in_recipe",
    "load_sources",
]


@dataclass
class BuiltRun:
    resolved: ResolvedRecipe
    model: MultiTaskModel
    tasks: dict[str, TaskData]
    metrics: dict[str, list[Metric]]
    task_infos: dict[str, TaskInfo]
    probes: dict[str, dict[str, datasets.Dataset]] = field(default_factory=dict)
    """Each task's probes, encoded: task -> probe name -> examples."""

    @property
    def recipe(self) -> Recipe:
        return self.resolved.recipe

    @property
    def source(self) -> str:
        """The recipe file, named in errors found while training."""
        return self.resolved.source


@contextmanager
def in_recipe(source: str, path: str | None) -> Iterator[None]:
    """An MtkitError raised inside names the recipe file and the full key path (`path` plus the error's own `key`).

    A component knows its own keys but not the file it came from, nor where in the recipe it sits. With no path,
    only the file is added. The error keeps its class and attributes (a PluginError keeps its plugin).
    """
    try:
        yield
    except MtkitError as exc:
        exc.locate(source, path)
        raise


def build_component(node: Node, source: str, *, seed: int | None = None, **runtime: Any) -> Any:
    """Construct `node`'s component with its validated config and the keyword-only runtime arguments.

    With `seed`, its initial weights come from a generator seeded by (seed, its key path), whatever was built before.
    """
    with in_recipe(source, node.where):
        cls = node.component_class()
        if seed is None:
            return cls(node.config, **runtime)
        with seeded(component_seed(seed, node.path)):
            return cls(node.config, **runtime)


def _check_sources(component: Backbone | Adapter | Combiner, backbone: Backbone, path: str, source: str) -> None:
    layers = len(backbone.layers())
    for rep in component.representation_sources():
        if rep.startswith(("layer:", "frozen_layer:")) and not 0 <= layer_index(rep) < layers:
            kind = rep.split(":")[0]
            raise MtkitError(f"{source}: {path}.source {rep!r}: the backbone has layers 0-{layers - 1}; use {kind}:0 to {kind}:{layers - 1}")


def build_model(resolved: ResolvedRecipe, task_infos: dict[str, TaskInfo]) -> MultiTaskModel:
    """The backbone with adapters, combiners and heads attached (no data needed)."""
    recipe, source, seed = resolved.recipe, resolved.source, resolved.recipe.run.seed
    backbone: Backbone = build_component(resolved.backbone(), source, seed=seed)
    backbone.requires_grad_(False)
    all_sites = backbone.sites()
    adapters: dict[str, Adapter] = {}
    problems = []
    for aid, node in resolved.adapters().items():
        sites = select_sites(node.config, all_sites)  # type: ignore[arg-type]
        if not sites:
            examples = ", ".join(sorted(all_sites)[:4])
            problems.append(
                f"{source}: {node.where}.target_modules{f' (adapter {aid!r})' if node.origin else ''} "
                f"{list(node.config.target_modules)!r} matches no Linear site of "  # type: ignore[attr-defined]
                f"backbone {recipe.backbone.type!r} (sites look like: {examples}, ...)"
            )
            continue
        adapters[aid] = build_component(node, source, seed=seed, sites=sites, context_size=backbone.hidden_size)
        _check_sources(adapters[aid], backbone, node.where, source)
    if problems:
        raise RecipeError(problems)
    setup = combiner_setup(recipe, backbone, adapters)
    combiners: dict[str, Combiner] = {}
    for path, node in resolved.combiners().items():
        combiners[path] = build_component(node, source, seed=seed, setup=setup)
        _check_sources(combiners[path], backbone, path, source)
    heads = {name: build_head(resolved, name, backbone, task_infos[name]) for name in recipe.tasks}
    for aid, node in resolved.adapters().items():
        with in_recipe(source, node.where):
            import_peft_parts(aid, adapters[aid], backbone, heads, setup.task_adapters)
    model = MultiTaskModel(backbone, adapters, combiners, heads, setup.task_adapters, active=resolved.phases[0].combiner.path)
    _check_selectors(resolved, model)
    return model


def combiner_setup(recipe: Recipe, backbone: Backbone, adapters: Mapping[str, Adapter]) -> CombinerSetup:
    """What every combiner of the recipe is built with besides its config."""
    # The combiners see the sites some adapter attaches to, in backbone order (per-site combiners create their
    # gates or attention there).
    used = {name for adapter in adapters.values() for name in adapter.site_names}
    return CombinerSetup(
        adapter_names=tuple(adapters),
        task_names=tuple(recipe.tasks),
        sites={name: site for name, site in backbone.sites().items() if name in used},
        hidden_size=backbone.hidden_size,
        task_adapters={name: recipe.adapter_for_task(name) for name in recipe.tasks},
    )


def _check_selectors(resolved: ResolvedRecipe, model: MultiTaskModel) -> None:
    """A `train` selector of a training phase that names no parameter of the built model is an error, not a no-op."""
    from mtkit.model.param_groups import selector_matches

    recipe, problems = resolved.recipe, []
    for phase in resolved.phases:
        if not phase.section.trains:
            continue
        for selector in phase.train:
            if selector_matches(model, selector):
                continue
            if selector.layers is not None:
                why = f"the backbone has layers 0-{len(model.backbone.layers()) - 1}"
            elif selector.part == "combiner":
                why = f"combiner {recipe.combiner.type!r} has no parameters"
            else:
                why = "that part of the model has no parameters"
            problems.append(
                f"{resolved.source}: phases.{phase.index}.train: selector {selector.text!r} names no parameter ({why}); remove it, or set "
                f"phases.{phase.index}.steps = 0 to only evaluate in that phase"
            )
    if problems:
        raise RecipeError(problems)


def build_head(resolved: ResolvedRecipe, task: str, backbone: Backbone, info: TaskInfo, *, seed_path: str | None = None) -> Head:
    """Task `task`'s head, initialised from the run seed and its key path (or `seed_path`, for new heads mid-run)."""
    node = resolved.head(task)
    seed = resolved.recipe.run.seed
    if seed_path is not None:
        node = Node(seed_path, node.kind, node.entry, node.config)
    head: Head = build_component(node, resolved.source, seed=seed, backbone=backbone, task=info)
    return head


def build_scheduler(resolved: ResolvedRecipe, phase: ResolvedPhase, task_sizes: list[int]) -> Scheduler:
    """The task scheduler of `phase` (its own, or the recipe's)."""
    scheduler: Scheduler = build_component(phase.scheduler, resolved.source, task_sizes=task_sizes)
    return scheduler


def load_sources(resolved: ResolvedRecipe) -> tuple[dict[str, DatasetSource], dict[str, Any], dict[str, TaskInfo]]:
    """Every task's dataset component, its loaded examples, and the task infos heads are built with."""
    sources: dict[str, DatasetSource] = {}
    loaded: dict[str, Any] = {}
    infos: dict[str, TaskInfo] = {}
    for index, name in enumerate(resolved.recipe.tasks):
        node = resolved.dataset(name)
        sources[name] = build_component(node, resolved.source)
        with in_recipe(resolved.source, node.path):
            loaded[name] = sources[name].load()
        labels = sources[name].label_names
        infos[name] = TaskInfo(name, index, tuple(labels) if labels is not None else None)
    return sources, loaded, infos


def encode_tasks(
    resolved: ResolvedRecipe,
    model: MultiTaskModel,
    sources: dict[str, DatasetSource],
    loaded: dict[str, Any],
    only: list[str] | None = None,
    splits: tuple[str, ...] | None = None,
) -> dict[str, TaskData]:
    """Every task's (or `only` these tasks') data, split and encoded; `splits` names the splits to encode (default all)."""
    recipe = resolved.recipe
    tokenizer = model.backbone.tokenizer
    data = {}
    for name, task in recipe.tasks.items():
        if only is None or name in only:
            with in_recipe(resolved.source, None):  # the messages name the task and the row
                max_length = task.max_length or recipe.run.max_length
                data[name] = prepare_task_data(name, sources[name], loaded[name], model.heads[name], tokenizer, max_length, splits)  # type: ignore[arg-type]
    return data


def build_probes(resolved: ResolvedRecipe, model: MultiTaskModel, tasks: dict[str, TaskData]) -> dict[str, dict[str, datasets.Dataset]]:
    """Every task's probes (of the tasks in `tasks`), encoded with the task's head: task -> probe name -> examples."""
    from mtkit.data.probes import held_out, transformed

    recipe, tokenizer = resolved.recipe, model.backbone.tokenizer
    probes: dict[str, dict[str, datasets.Dataset]] = {}
    for task, section in recipe.tasks.items():
        if task not in tasks:
            continue
        head = model.heads[task]
        for name, probe in section.probes.items():
            where = f"tasks.{task}.probes.{name}"
            node = resolved.probe_dataset(task, name)
            if node is None:
                examples = tasks[task].eval
            else:
                source = build_component(node, resolved.source)
                with in_recipe(resolved.source, where):
                    examples = held_out(source, source.load(), f"{task}/{name}", head.task.label_names)
            with in_recipe(resolved.source, None):
                examples = transformed(examples, probe, f"{resolved.source}: {where}")
                check_rows(examples, head, task, f"probe {name!r}")
            max_length = probe.max_length or section.max_length or recipe.run.max_length
            probes.setdefault(task, {})[name] = encode_examples(examples, head, tokenizer, max_length, f"{task}/{name}")
    return probes


def build_metrics(resolved: ResolvedRecipe) -> dict[str, list[Metric]]:
    return {name: [build_component(node, resolved.source) for node in resolved.metrics(name)] for name in resolved.recipe.tasks}


def build_run(resolved: ResolvedRecipe) -> BuiltRun:
    """Load every task's data, build the model, and encode the data with the heads."""
    sources, loaded, infos = load_sources(resolved)
    model = build_model(resolved, infos)
    data = encode_tasks(resolved, model, sources, loaded)
    return BuiltRun(resolved, model, data, build_metrics(resolved), infos, build_probes(resolved, model, data))
