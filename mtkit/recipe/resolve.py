"""Resolving a recipe: both validation passes, once, into typed nodes that validation, building and training share.

Pass 1 (mtkit/recipe/schema.py) checks the structure. Pass 2 looks every component table's `type` up in the registry
and validates the rest of the table with that component's config class, giving one `Node` per component.
Problems of both passes are collected and raised together, each with its file and key path. Nothing here
imports torch or a component's module: only registered config classes are read.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mtkit.api.config import ComponentConfig
from mtkit.api.errors import MtkitError, RecipeError, UnknownComponentError
from mtkit.api.registry import ComponentEntry, Registry
from mtkit.recipe import defaults
from mtkit.recipe.file import read_recipe_file
from mtkit.recipe.library import expand_libraries
from mtkit.recipe.overrides import apply_overrides
from mtkit.recipe.schema import (
    BASE_ROUTING,
    LEARNED_ROUTING,
    ORACLE_ROUTING,
    ComponentTable,
    PhaseSection,
    Recipe,
    TemperatureSchedule,
    component_tables,
)
from mtkit.recipe.selectors import Selector, heads_only, parse_selectors

__all__ = [
    "COMBINER_PATH",
    "ORACLE_PATH",
    "Node",
    "ResolvedPhase",
    "ResolvedRecipe",
    "evaluation_path",
    "load_recipe",
    "resolve",
    "routing_path",
]

ORACLE_PATH = "oracle"
"""Where the model holds the built-in oracle combiner (beside the recipe's, at `combiner`)."""
COMBINER_PATH = "combiner"
"""Where the model holds the recipe's combiner (the `combiner` table; the `combiner` selector names it)."""


def routing_path(label: str) -> str:
    """The path of the combiner that runs under a phase's routing label (`oracle` or `learned`)."""
    if label not in (ORACLE_ROUTING, LEARNED_ROUTING):
        raise MtkitError(f"--routing {label!r}: use {ORACLE_ROUTING} or {LEARNED_ROUTING}")
    return ORACLE_PATH if label == ORACLE_ROUTING else COMBINER_PATH


def evaluation_path(label: str) -> str | None:
    """The combiner an evaluation labelled `label` runs: a phase's routing label, or `base` (None: no adapter)."""
    if label == BASE_ROUTING:
        return None
    if label not in (ORACLE_ROUTING, LEARNED_ROUTING):
        raise MtkitError(f"--routing {label!r}: use {ORACLE_ROUTING}, {LEARNED_ROUTING} or {BASE_ROUTING}")
    return routing_path(label)


@dataclass(frozen=True)
class Node:
    """One component of a recipe: where it sits, its registry entry and its validated config."""

    path: str
    kind: str
    entry: ComponentEntry
    config: ComponentConfig
    origin: str | None = None
    """Where the recipe declares it, when not at `path` (`libraries.<label>` for an adapter a library added)."""

    @property
    def where(self) -> str:
        """The key path errors about this component name."""
        return self.origin or self.path

    @property
    def type(self) -> str:
        return self.entry.name

    def component_class(self) -> type:
        """The component class (imported on first use)."""
        return self.entry.load()


@dataclass(frozen=True)
class ResolvedPhase:
    """One phase with everything it runs resolved: the combiner at the sites, scheduler, balancer, parsed selectors,
    task -> adapter table and temperature schedule."""

    index: int
    section: PhaseSection
    combiner: Node
    """The combiner that runs at every site in this phase: the oracle node when the phase routes by task id."""
    scheduler: Node
    balancer: Node
    train: tuple[Selector, ...]
    task_adapters: dict[str, str | None]
    """Which adapter serves each task when task ids route (the phase's `task_adapters` over each task's own)."""
    temperature: TemperatureSchedule | None

    @property
    def name(self) -> str:
        return self.section.name

    @property
    def label(self) -> str:
        """The label of this phase's results (`oracle` or `learned` routing)."""
        return self.section.routing

    @property
    def routes_by_task(self) -> bool:
        return self.section.routes_by_task


@dataclass
class ResolvedRecipe:
    """A validated recipe: its structure, one node per component (the oracle's included, at `oracle`), its phases,
    the raw dict it came from and its file."""

    recipe: Recipe
    nodes: dict[str, Node]
    raw: dict[str, Any]
    source: str
    phases: list[ResolvedPhase]

    @property
    def oracle(self) -> Node:
        """The built-in combiner that runs at every site while a phase routes by task id."""
        return self.nodes[ORACLE_PATH]

    def combiners(self) -> dict[str, Node]:
        """The combiners the model holds, by path: the recipe's and the oracle."""
        return {path: self.nodes[path] for path in (COMBINER_PATH, ORACLE_PATH)}

    def backbone(self) -> Node:
        return self.nodes["backbone"]

    def adapters(self) -> dict[str, Node]:
        return {aid: self.nodes[f"adapters.{aid}"] for aid in self.recipe.adapters}

    def combiner(self) -> Node:
        return self.nodes["combiner"]

    def scheduler(self) -> Node:
        """The recipe's task scheduler (a phase's own is its `ResolvedPhase.scheduler`)."""
        return self.nodes["scheduler"]

    def balancer(self) -> Node:
        """The recipe's balancer (a phase's own is its `ResolvedPhase.balancer`)."""
        return self.nodes["balancer"]

    def dataset(self, task: str) -> Node:
        return self.nodes[f"tasks.{task}.dataset"]

    def head(self, task: str) -> Node:
        return self.nodes[f"tasks.{task}.head"]

    def probe_dataset(self, task: str, probe: str) -> Node | None:
        """The dataset of a task's probe, or None when the probe reads the task's own held-out split."""
        return self.nodes.get(f"tasks.{task}.probes.{probe}.dataset")

    def metrics(self, task: str) -> list[Node]:
        prefix = f"tasks.{task}.metrics."
        return [node for path, node in self.nodes.items() if path.startswith(prefix)]


# --- pass 2 ----------------------------------------------------------------------------------


def _unknown_type(registry: Registry, kind: str, name: str, path: str, source: str) -> str:
    known = ", ".join(registry.names(kind)) or "none installed"
    message = f"{source}: {path}.type {name!r} is not a registered {kind} (known: {known}); see 'mtkit list-components --kind {kind}'"
    failed = [p for p in registry.plugins if p.status in ("failed", "incompatible")]
    if failed:
        # A plugin that did not load registered nothing, so the type it would have provided is unknown.
        listed = "; ".join(f"{p.label()}: {p.status}: {p.error}" for p in failed[:3])
        message += f" (plugins that failed to load or are incompatible, one may provide it: {listed})"
    return message


def _nodes(raw: Mapping[str, Any], registry: Registry, source: str, origins: Mapping[str, str]) -> tuple[dict[str, Node], list[str]]:
    nodes: dict[str, Node] = {}
    problems: list[str] = []
    for path, kind, table in component_tables(raw):
        if not isinstance(table, Mapping):
            continue  # pass 1 reports the wrong shape
        name = table.get("type")
        if not isinstance(name, str):
            continue  # pass 1 reports the missing or mistyped `type`
        try:
            entry = registry.get(kind, name)
        except UnknownComponentError:
            problems.append(_unknown_type(registry, kind, name, path, source))
            continue
        params = {k: v for k, v in table.items() if k != "type"}
        try:
            nodes[path] = Node(path, kind, entry, entry.config_class.model_validate(params), origins.get(path))
        except ValidationError as exc:
            problems += pydantic_problems(exc, source, origins.get(path, path), entry.config_class)
    return nodes, problems


def _aux_loss_problems(recipe: Recipe, registry: Registry, source: str) -> list[str]:
    """A phase's aux_losses name must be a loss some combiner or adapter declares (one the recipe's components lack is
    skipped at run time, so an ablation that swaps the combiner or an adapter keeps its phases)."""
    declared = {
        n for kind in ("combiner", "adapter") for entry in registry.components(kind) for n in getattr(entry.config_class, "aux_loss_names", ())
    }
    problems = []
    for i, phase in enumerate(recipe.phases):
        for name in sorted(set(phase.aux_losses) - declared):
            hint = difflib.get_close_matches(name, declared, n=1)
            problems.append(
                f"{source}: phases.{i}.aux_losses.{name}: no combiner or adapter declares this auxiliary loss"
                + (f"; did you mean {hint[0]!r}?" if hint else "")
                + f" (known: {', '.join(sorted(declared)) or 'none'})"
            )
    return problems


def _untrainable_problems(recipe: Recipe, nodes: Mapping[str, Node], source: str) -> list[str]:
    """A training phase that trains a combiner declared to have no parameters would silently train nothing."""
    node = nodes.get("combiner")
    if node is None or getattr(node.entry.config_class, "trainable", True):
        return []
    return [
        f"{source}: phases.{i}.train: selector 'combiner' names no parameter (combiner {node.type!r} has no parameters); remove it, or "
        f"set phases.{i}.steps = 0 to only evaluate in that phase"
        for i, phase in enumerate(recipe.phases)
        if phase.trains and "combiner" in phase.train
    ]


def _balancer_problems(recipe: Recipe, nodes: Mapping[str, Node], source: str) -> list[str]:
    """A balancer that compares the tasks of one batch has nothing to compare in a phase drawing one task per batch
    (a phase training heads only is exempt: each head is one task's, so there is nothing shared to balance)."""
    problems = []
    for i, phase in enumerate(recipe.phases):
        node = nodes.get(f"phases.{i}.balancer", nodes.get("balancer"))
        if node is None or phase.steps == 0 or phase.batching != "task" or not getattr(node.entry.config_class, "needs_mixed_batches", False):
            continue
        if heads_only(phase.train):
            continue
        where = f"phases.{i}.balancer" if node.path != "balancer" else "balancer"
        problems.append(
            f"{source}: phases.{i}.batching: balancer {node.type!r} ({where}) compares the tasks within a batch, but this phase "
            f"draws one task per batch; set phases.{i}.batching = \"mixed\", or give the phase a balancer that works across "
            f"batches (phases.{i}.balancer = {{type = \"static\"}})"
        )
    return problems


def _validation_split_problems(recipe: Recipe, nodes: Mapping[str, Node], source: str) -> list[str]:
    """A phase that scores validation splits needs every task's dataset to carve one."""
    problems = []
    for i, phase in enumerate(recipe.phases):
        if phase.eval_every is None:
            continue
        for name in recipe.tasks:
            node = nodes.get(f"tasks.{name}.dataset")
            if node is not None and getattr(node.config, "validation_size", None) is None:
                problems.append(
                    f"{source}: phases.{i}.eval_every scores validation splits, but tasks.{name}.dataset has none; "
                    f"set tasks.{name}.dataset.validation_size (e.g. 0.1)"
                )
    return problems


def _temperature_problems(recipe: Recipe, nodes: Mapping[str, Node], source: str) -> list[str]:
    """A temperature schedule on a phase whose combiner reads no temperature would silently do nothing."""
    problems = []
    for i, phase in enumerate(recipe.phases):
        node = nodes.get(routing_path(phase.routing))
        if phase.temperature is None or node is None or getattr(node.entry.config_class, "has_temperature", False):
            continue
        runs = f"routes by task id, so the oracle runs (phases.{i}.routing = {phase.routing!r})" if phase.routes_by_task else f"runs combiner {node.type!r}"
        problems.append(
            f"{source}: phases.{i}.temperature: the phase {runs}, which has no temperature; remove phases.{i}.temperature, "
            "or use a combiner with one (router, fusion_attention, arrow)"
        )
    return problems


def _phases(recipe: Recipe, nodes: Mapping[str, Node]) -> list[ResolvedPhase]:
    phases = []
    for i, section in enumerate(recipe.phases):
        phases.append(
            ResolvedPhase(
                index=i,
                section=section,
                combiner=nodes[routing_path(section.routing)],
                scheduler=nodes.get(f"phases.{i}.scheduler", nodes["scheduler"]),
                balancer=nodes.get(f"phases.{i}.balancer", nodes["balancer"]),
                train=parse_selectors(section.train),
                task_adapters={task: recipe.adapter_for_task(task, section) for task in recipe.tasks},
                temperature=section.temperature,
            )
        )
    return phases


def _oracle(registry: Registry, source: str) -> Node:
    try:
        entry = registry.get("combiner", defaults.ORACLE_COMBINER)
    except UnknownComponentError:
        raise RecipeError(
            [f"{source}: oracle routing needs the built-in combiner {defaults.ORACLE_COMBINER!r}, which is not registered "
             "(is the mtkit_combiners plugin disabled through MTKIT_DISABLE_PLUGINS?)"]
        ) from None
    return Node(ORACLE_PATH, "combiner", entry, entry.config_class.model_validate({}))


def resolve(raw: dict[str, Any], registry: Registry, source: str) -> ResolvedRecipe:
    """Run both passes over a raw recipe; raise one RecipeError listing every problem.

    Libraries become `adapters.<id>` tables first (mtkit/recipe/library.py); the resolved recipe keeps `raw` as written.
    """
    expanded, origins, problems = expand_libraries(raw, registry, source)
    recipe = None
    try:
        recipe = Recipe.model_validate(expanded)
    except ValidationError as exc:
        problems += pydantic_problems(exc, source, "", Recipe)
    nodes, component_problems = _nodes(expanded, registry, source, origins)
    problems += component_problems
    nodes[ORACLE_PATH] = _oracle(registry, source)
    if recipe is not None:
        problems += _aux_loss_problems(recipe, registry, source)
        problems += _untrainable_problems(recipe, nodes, source)
        problems += _balancer_problems(recipe, nodes, source)
        problems += _temperature_problems(recipe, nodes, source)
        if not problems:
            problems += _validation_split_problems(recipe, nodes, source)
    if problems or recipe is None:
        raise RecipeError(problems)
    return ResolvedRecipe(recipe, nodes, raw, source, _phases(recipe, nodes))


def load_recipe(path: str | Path, overrides: Sequence[str] = (), registry: Registry | None = None) -> ResolvedRecipe:
    """Read, override and resolve a recipe file."""
    from mtkit.api.registry import load_registry

    raw = apply_overrides(read_recipe_file(path), overrides, str(path))
    return resolve(raw, registry or load_registry(), str(path))


# --- pydantic errors in recipe terms -----------------------------------------------------------


def _path(loc: Sequence[int | str]) -> str:
    return ".".join(str(p) for p in loc if p not in ("ComponentTable", "str"))


def pydantic_problems(exc: ValidationError, source: str, prefix: str, model: type[BaseModel] | None) -> list[str]:
    """One `file: key.path: message` line per pydantic error, with the allowed keys and a close match for unknown ones."""
    problems = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in {"str", "ComponentTable"}))]
        where = ".".join(x for x in [prefix, _path(loc)] if x)
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            msg = "unknown key" + (f"; did you mean {hint[0]!r}?" if hint else "")
            msg += f" (allowed: {', '.join(sorted(allowed))})" if allowed else ""
        elif err["type"] == "value_error":
            msg = str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
        else:
            msg = err["msg"][0].lower() + err["msg"][1:]
            if err["type"] != "missing" and "input" in err:
                msg += f" (got {err['input']!r})"
        problems.append(f"{source}: {where}: {msg}" if where else f"{source}: {msg}")
    return problems


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _allowed_keys(model: type[BaseModel] | None, loc: Sequence[int | str]) -> list[str]:
    """Field names of the sub-model at `loc`, walking fields, list items and dict values."""
    current: Any = model
    for part in loc:
        current = _unwrap_optional(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = field.annotation
        elif typing.get_origin(current) in (list, dict):
            current = typing.get_args(current)[-1]
        else:
            return []
    current = _unwrap_optional(current)
    if isinstance(current, type) and issubclass(current, BaseModel) and current is not ComponentTable:
        return list(current.model_fields)
    return []
