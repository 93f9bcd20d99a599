"""Recipe files: pydantic models for the TOML structure, overrides, and both validation passes.

Pass 1 checks the structure (known tables and keys, types, references between sections). Pass 2
looks every component table's `type` up in the registry and validates the rest of the table with
that component's config class. Problems of both passes are collected and raised together.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mtkit.config import ComponentConfig
from mtkit.errors import RecipeError, UnknownComponentError
from mtkit.recipe_file import read_recipe_file
from mtkit.registry import Registry

__all__ = [
    "ComponentTable",
    "PhaseSection",
    "Recipe",
    "RunSection",
    "TaskSection",
    "TemperatureSchedule",
    "apply_overrides",
    "component_tables",
    "load_recipe",
    "read_recipe_file",
    "validate_recipe",
]

_ID = r"^[A-Za-z_][A-Za-z0-9_]*$"
SELECTOR_HELP = (
    "adapters, adapters.<id>, combiner, heads, heads.<task>, backbone, backbone.embeddings, "
    "backbone.layers.<i> or backbone.layers.<i>-<j>"
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentTable(BaseModel):
    """A component: its registered `type` and its params side by side."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str = Field(description="Registered name of the component (see `mtkit list-components`).")

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class RunSection(_Section):
    name: str = Field(default="run", pattern=r"^[\w.-]+$", description="Run name; default run directory is runs/<name>.")
    seed: int = Field(default=0, ge=0, description="Seed for weights, data order and dropout.")
    output_dir: str | None = Field(default=None, description="Run directory (default runs/<name>).")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="Where to train; auto picks a GPU if present.")
    mixed_precision: Literal["no", "fp16", "bf16"] = Field(default="no", description="Accelerate mixed precision.")
    batch_size: int = Field(default=32, gt=0, description="Training batch size (a phase may override it).")
    eval_batch_size: int = Field(default=64, gt=0, description="Evaluation batch size.")
    max_length: int = Field(default=128, gt=0, description="Token limit per example (a task may override it).")
    checkpoint_every: int = Field(default=100, ge=0, description="Steps between checkpoints; 0 = at phase ends only.")
    log_every: int = Field(default=10, gt=0, description="Steps between metric log lines.")
    threads: int | None = Field(default=None, gt=0, description="CPU threads for torch (default: torch's choice).")


class TaskSection(_Section):
    dataset: ComponentTable = Field(description="Where the task's examples come from.")
    head: ComponentTable = Field(description="How backbone outputs become this task's predictions and loss.")
    metrics: list[str | ComponentTable] = Field(default_factory=lambda: ["accuracy"],  # type: ignore[arg-type]
        description="Metrics scored on the held-out split.")
    adapter: str | None = Field(default=None, description="The adapter that serves this task under oracle routing (default: the adapter with the task's name, or the only adapter).")
    max_length: int | None = Field(default=None, gt=0, description="Token limit for this task's examples.")
    loss_weight: float = Field(default=1.0, gt=0, description="Weight of this task's loss in mixed batches.")

    def metric_tables(self) -> list[ComponentTable]:
        return [ComponentTable(type=m) if isinstance(m, str) else m for m in self.metrics]


class TemperatureSchedule(_Section):
    start: float = Field(default=1.0, gt=0, description="Temperature at the phase's first step.")
    end: float = Field(default=1.0, gt=0, description="Temperature at its last step (exponential annealing).")


class PhaseSection(_Section):
    name: str = Field(pattern=_ID, description="Phase name (used in logs, metrics and checkpoints).")
    steps: int = Field(ge=0, description="Optimiser steps in this phase; 0 only evaluates (e.g. the untrained model).")
    train: list[str] = Field(
        default_factory=list,
        description=f"Parameter selectors to train: {SELECTOR_HELP}. A phase that trains heads only draws batches from those heads' tasks.",
    )
    lr: float = Field(default=1e-3, gt=0, description="Peak learning rate.")
    head_lr_multiplier: float = Field(default=1.0, gt=0, description="Heads train at lr times this.")
    layer_lr_decay: float = Field(default=1.0, gt=0, le=1, description="Backbone layer i of n trains at lr * decay^(n-1-i).")
    lr_schedule: Literal["linear", "cosine", "constant"] = Field(default="linear", description="Decay after warmup.")
    warmup_ratio: float = Field(default=0.06, ge=0, lt=1, description="Share of steps spent warming up.")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float | None = Field(default=1.0, gt=0, description="Gradient clipping norm (none to disable).")
    batch_size: int | None = Field(default=None, gt=0, description="Overrides run.batch_size.")
    routing: Literal["oracle", "learned"] = Field(default="oracle", description="oracle: task ids pick adapters; learned: the combiner decides.")
    batching: Literal["task", "mixed"] = Field(default="task", description="task: one task per batch; mixed: tasks drawn per sample.")
    scheduler: ComponentTable | None = Field(default=None, description="Overrides the recipe's task scheduler in this phase.")
    aux_losses: dict[str, float] = Field(default_factory=dict, description="Auxiliary loss weights by name (the combiner's losses).")
    temperature: TemperatureSchedule | None = Field(default=None, description="Combiner temperature schedule.")
    evaluate: bool = Field(default=True, description="Evaluate every task at the end of the phase.")
    eval_every: int | None = Field(
        default=None,
        gt=0,
        description="Score every task's validation split before the first step and every this many steps "
        "(needs `validation_size` in each task's dataset).",
    )
    keep_best: Literal["mean", "per_task"] | None = Field(
        default=None,
        description="At the phase's end, restore the trained weights of the best validation check (the phase's "
        "starting weights included; ties keep the earlier), scored by each task's first metric: `mean` over tasks for "
        "all weights, or `per_task`, each task's own weights (its head, its adapter under oracle routing, its per-task fusion) from its own best check. "
        "Needs `eval_every`.",
    )
    fresh_heads: bool = Field(
        default=False,
        description="Start the phase from newly initialised heads for the tasks whose heads it trains (AdapterFusion's "
        "stage 2 drops the heads trained with the single adapters and trains new ones on the fusion: a kept head that "
        "already fits its training set leaves the fusion no loss to learn from).",
    )
    min_improvement: float = Field(
        default=0.0,
        ge=0,
        description="keep_best replaces the kept weights only with a check that beats them by more than this (a "
        "noise margin: about one standard error of the validation score keeps the starting weights unless a later "
        "check is clearly better).",
    )

    @model_validator(mode="after")
    def _check(self) -> PhaseSection:
        bad = [w for w in self.aux_losses.values() if w < 0]
        if bad:
            raise ValueError("aux_losses weights must be >= 0")
        if self.keep_best is not None and self.eval_every is None:
            raise ValueError("keep_best needs eval_every (how often to score the validation split)")
        if self.steps > 0 and not self.train:
            raise ValueError("a phase with steps > 0 needs `train` selectors (use steps = 0 for an evaluation-only phase)")
        return self


class Recipe(_Section):
    run: RunSection = Field(default_factory=RunSection, description="Run-wide settings.")
    backbone: ComponentTable = Field(description="The shared pretrained or from-scratch transformer.")
    adapters: dict[str, ComponentTable] = Field(default_factory=dict, description="Adapters by id.")
    combiner: ComponentTable | None = Field(default=None, description="How adapters at a site combine (default oracle).")
    scheduler: ComponentTable = Field(default_factory=lambda: ComponentTable(type="proportional"), description="Which task each batch draws from.")
    tasks: dict[str, TaskSection] = Field(min_length=1, description="Tasks by name.")
    phases: list[PhaseSection] = Field(min_length=1, description="Training phases, run in order.")
    freeze: list[str] = Field(
        default_factory=list,
        description=f"Selectors no phase trains, whatever its `train` says (freezing scenarios): {SELECTOR_HELP}.",
    )

    @model_validator(mode="after")
    def _check_references(self) -> Recipe:
        problems: list[str] = []
        for kind, ids in (("adapter", self.adapters), ("task", self.tasks)):
            problems += [f"{kind} id {i!r} must be a Python identifier" for i in ids if not re.match(_ID, i)]
        for name, task in self.tasks.items():
            if task.adapter is not None and task.adapter not in self.adapters:
                problems.append(f"tasks.{name}.adapter {task.adapter!r} is not an adapter id ({_known(self.adapters)})")
        names = [p.name for p in self.phases]
        problems += [f"phase name {n!r} is used twice" for n in sorted({n for n in names if names.count(n) > 1})]
        for i, phase in enumerate(self.phases):
            problems += [f"phases.{i}.train: {msg}" for msg in selector_problems(phase.train, self)]
            if phase.fresh_heads and not self.trained_heads(phase):
                problems.append(
                    f"phases.{i}.fresh_heads: the phase trains no head (add \"heads\" or \"heads.TASK\" to phases.{i}.train, "
                    "outside `freeze`), so new heads would stay untrained"
                )
        problems += [f"freeze: {msg}" for msg in selector_problems(self.freeze, self)]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def trained_heads(self, phase: PhaseSection) -> list[str]:
        """The tasks whose heads `phase` trains (its `heads` selectors, less those `freeze` names)."""

        def named(selectors: Sequence[str]) -> set[str]:
            tasks: set[str] = set()
            for sel in selectors:
                kind, _, task = sel.partition(".")
                if kind == "heads":
                    tasks |= {task} if task else set(self.tasks)
            return tasks

        trained, frozen = named(phase.train), named(self.freeze)
        return [task for task in self.tasks if task in trained and task not in frozen]

    def phase_tasks(self, phase: PhaseSection) -> list[str]:
        """The tasks `phase` draws training batches from: every task, unless it trains heads only, then
        the tasks of those heads (another task's loss would reach no parameter the phase trains)."""
        if phase.train and all(sel.partition(".")[0] == "heads" for sel in phase.train):
            return self.trained_heads(phase)
        return list(self.tasks)

    def adapter_for_task(self, task: str) -> str | None:
        """The adapter that serves `task` under oracle routing."""
        explicit = self.tasks[task].adapter
        if explicit is not None:
            return explicit
        if task in self.adapters:
            return task
        return next(iter(self.adapters)) if len(self.adapters) == 1 else None


def _known(ids: Mapping[str, Any]) -> str:
    return f"known: {', '.join(sorted(ids))}" if ids else "the recipe defines none"


def selector_problems(selectors: Sequence[str], recipe: Recipe) -> list[str]:
    problems = []
    for sel in selectors:
        head, _, rest = sel.partition(".")
        ok = (
            (head == "adapters" and (not rest or rest in recipe.adapters))
            or (head == "heads" and (not rest or rest in recipe.tasks))
            or (head == "combiner" and not rest)
            or (head == "backbone" and (not rest or rest == "embeddings" or re.fullmatch(r"layers\.\d+(-\d+)?", rest)))
        )
        if not ok:
            problems.append(f"selector {sel!r} matches nothing (use {SELECTOR_HELP})")
    return problems


# --- reading and overrides -------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string: --set adapters.a.type=lora


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str], source: str) -> dict[str, Any]:
    """Apply `key.path=value` overrides (values parsed as TOML, else taken as strings)."""
    problems = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"{source}: override {item!r} must look like key.path=value")
            continue
        node: Any = raw
        parts = key.strip().split(".")
        try:
            for part in parts[:-1]:
                node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
            last = parts[-1]
            if isinstance(node, list):
                node[int(last)] = _parse_value(value)
            elif isinstance(node, dict):
                node[last] = _parse_value(value)
            else:
                raise TypeError
        except (ValueError, IndexError, TypeError, AttributeError):
            problems.append(f"{source}: override {key!r} does not name a place in the recipe")
    if problems:
        raise RecipeError(problems)
    return raw


# --- validation --------------------------------------------------------------------------------


def _path(loc: Sequence[int | str]) -> str:
    return ".".join(str(p) for p in loc if p not in ("ComponentTable", "str"))


def _pydantic_problems(exc: ValidationError, source: str, prefix: str, model: type[BaseModel] | None) -> list[str]:
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


def component_tables(raw: Mapping[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """Every component table in a raw recipe as (key path, kind, table), found best-effort."""

    def tables(node: Any) -> Mapping[str, Any]:
        return node if isinstance(node, Mapping) else {}

    if "backbone" in raw:
        yield "backbone", "backbone", raw["backbone"]
    for aid, table in tables(raw.get("adapters")).items():
        yield f"adapters.{aid}", "adapter", table
    if raw.get("combiner") is not None:
        yield "combiner", "combiner", raw["combiner"]
    if "scheduler" in raw:
        yield "scheduler", "scheduler", raw["scheduler"]
    for name, task in tables(raw.get("tasks")).items():
        task = tables(task)
        for key, kind in (("dataset", "dataset"), ("head", "head")):
            if key in task:
                yield f"tasks.{name}.{key}", kind, task[key]
        metrics = task.get("metrics", ["accuracy"])
        for i, metric in enumerate(metrics if isinstance(metrics, list) else []):
            yield f"tasks.{name}.metrics.{i}", "metric", {"type": metric} if isinstance(metric, str) else metric
    for i, phase in enumerate(raw.get("phases") if isinstance(raw.get("phases"), list) else []):
        if isinstance(phase, Mapping) and phase.get("scheduler") is not None:
            yield f"phases.{i}.scheduler", "scheduler", phase["scheduler"]


def validate_components(raw: Mapping[str, Any], registry: Registry, source: str) -> tuple[dict[str, ComponentConfig], list[str]]:
    """Pass 2: validate each component table's params with its registered config class."""
    configs: dict[str, ComponentConfig] = {}
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
            known = ", ".join(registry.names(kind)) or "none installed"
            problems.append(
                f"{source}: {path}.type {name!r} is not a registered {kind} (known: {known}); "
                f"see 'mtkit list-components --kind {kind}'"
            )
            continue
        params = {k: v for k, v in table.items() if k != "type"}
        try:
            configs[path] = entry.config_class.model_validate(params)
        except ValidationError as exc:
            problems += _pydantic_problems(exc, source, path, entry.config_class)
    return configs, problems


def validate_recipe(raw: dict[str, Any], registry: Registry, source: str) -> tuple[Recipe, dict[str, ComponentConfig]]:
    """Run both passes over a raw recipe; raise one RecipeError listing every problem."""
    problems: list[str] = []
    recipe = None
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        problems += _pydantic_problems(exc, source, "", Recipe)
    configs, component_problems = validate_components(raw, registry, source)
    problems += component_problems
    if recipe is not None and not problems:
        problems += _validation_split_problems(recipe, configs, source)
    if problems or recipe is None:
        raise RecipeError(problems)
    return recipe, configs


def _validation_split_problems(recipe: Recipe, configs: Mapping[str, ComponentConfig], source: str) -> list[str]:
    """A phase that scores validation splits needs every task's dataset to carve one."""
    problems = []
    for i, phase in enumerate(recipe.phases):
        if phase.eval_every is None:
            continue
        for name in recipe.tasks:
            if getattr(configs.get(f"tasks.{name}.dataset"), "validation_size", None) is None:
                problems.append(
                    f"{source}: phases.{i}.eval_every scores validation splits, but tasks.{name}.dataset has none; "
                    f"set tasks.{name}.dataset.validation_size (e.g. 0.1)"
                )
    return problems


def load_recipe(
    path: str | Path, overrides: Sequence[str] = (), registry: Registry | None = None
) -> tuple[Recipe, dict[str, ComponentConfig], dict[str, Any]]:
    """Read, override and validate a recipe file.

    Returns:
        The recipe, the validated component configs by key path, and the resolved raw dict.
    """
    from mtkit.registry import load_registry

    raw = apply_overrides(read_recipe_file(path), overrides, str(path))
    recipe, configs = validate_recipe(raw, registry or load_registry(), str(path))
    return recipe, configs, raw
