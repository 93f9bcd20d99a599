"""The recipe's structure (validation pass 1): pydantic models for the TOML tables, and where component tables sit.

Pass 1 checks the structure (known tables and keys, types, references between sections). Pass 2
(mtkit/recipe/resolve.py) looks every component table's `type` up in the registry and validates the rest of
the table with that component's config class.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mtkit.recipe import defaults
from mtkit.recipe.phase_schema import FewShotSection, PhaseSection, TemperatureSchedule, ViewSection, runs_recipe_combiner
from mtkit.recipe.sections import BASE_ROUTING, ID_PATTERN, LEARNED_ROUTING, ORACLE_ROUTING, ROUTINGS, ComponentTable, Section
from mtkit.recipe.selectors import SELECTOR_HELP, heads_only, selected_tasks, selector_problems

__all__ = [
    "BASE_ROUTING",
    "LEARNED_ROUTING",
    "ORACLE_ROUTING",
    "ROUTINGS",
    "TABLES",
    "ComponentTable",
    "FewShotSection",
    "PhaseSection",
    "ProbeSection",
    "Recipe",
    "RunSection",
    "TaskSection",
    "TemperatureSchedule",
    "ViewSection",
    "component_tables",
    "runs_recipe_combiner",
]

TABLES: tuple[tuple[str, str], ...] = (
    ("backbone", "backbone"),
    ("adapters.*", "adapter"),
    ("libraries.*", "adapter"),
    ("combiner", "combiner"),
    ("scheduler", "scheduler"),
    ("tasks.*.dataset", "dataset"),
    ("tasks.*.head", "head"),
    ("tasks.*.metrics.#", "metric"),
    ("phases.#.scheduler", "scheduler"),
    ("tasks.*.probes.*.dataset", "dataset"),
    ("balancer", "balancer"),
    ("phases.#.balancer", "balancer"),
)
"""Where component tables sit in a recipe, as (key pattern, kind): `*` is any table key, `#` any list index.
Validation, building, the JSON Schema and the recipe reference all read this one list."""

_DEFAULTS: dict[str, Any] = {
    "combiner": {"type": defaults.COMBINER},
    "scheduler": {"type": defaults.SCHEDULER},
    "balancer": {"type": defaults.BALANCER},
    "tasks.*.metrics": list(defaults.METRICS),
}
"""What a recipe that leaves a component table out gets."""


class RunSection(Section):
    name: str = Field(default="run", pattern=r"^[\w.-]+$", description="Run name; default run directory is runs/<name>.")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Seed for weights, data order and dropout.")
    output_dir: str | None = Field(default=None, description="Run directory (default runs/<name>).")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="Where to train; auto picks a GPU if present.")
    mixed_precision: Literal["no", "fp16", "bf16"] = Field(default="no", description="Accelerate mixed precision.")
    batch_size: int = Field(default=32, gt=0, description="Training batch size (a phase may override it).")
    eval_batch_size: int = Field(default=64, gt=0, description="Evaluation batch size.")
    max_length: int = Field(default=128, gt=0, description="Token limit per example (a task may override it).")
    checkpoint_every: int = Field(default=100, ge=0, description="Steps between checkpoints; 0 = at phase ends only.")
    log_every: int = Field(default=10, gt=0, description="Steps between metric log lines.")
    bootstrap_resamples: int = Field(
        default=1000, ge=0, description="Resamples of the held-out examples for each score's bootstrap 95% interval "
        "and the end of the run's paired differences (intervals.json); drawn from the run seed; 0: no intervals."
    )
    threads: int | None = Field(default=None, gt=0, description="CPU threads for torch (default: torch's choice).")
    inference_cost: bool = Field(
        default=True,
        description="After training, time the deployed model against the bare backbone on a few held-out examples "
        "(inference.json; `mtkit ablate` shows it); false skips those extra forward passes.",
    )
    grad_accumulation: int = Field(
        default=1,
        gt=0,
        description="Micro-batches of batch_size whose gradients make one optimiser step (effective batch = batch_size x "
        "grad_accumulation x processes); steps, schedules and checkpoints count optimiser steps.",
    )


class ProbeSection(Section):
    """An extra evaluation set of a task: its inputs in another form or from another distribution."""

    dataset: ComponentTable | None = Field(
        default=None,
        description="Where the probe's examples come from (its held-out split, made with the dataset's own split settings); "
        "unset: the task's own held-out split.",
    )
    transform: Literal["none", "first_sentence"] = Field(
        default="none", description="first_sentence: keep only the first sentence of the `field` text of each example."
    )
    field: str = Field(default="text", min_length=1, description="The example field `transform` changes.")
    max_length: int | None = Field(
        default=None, gt=0, description="Token limit for the probe's examples (cut as the head cuts long inputs), e.g. 16."
    )


class TaskSection(Section):
    dataset: ComponentTable = Field(description="Where the task's examples come from.")
    head: ComponentTable = Field(description="How backbone outputs become this task's predictions and loss.")
    metrics: list[str | ComponentTable] = Field(default_factory=lambda: list(defaults.METRICS),  # type: ignore[arg-type]
        description="Metrics scored on the held-out split.")
    adapter: str | None = Field(default=None, description="The adapter that serves this task under oracle routing (default: the adapter with the task's name, or the only adapter).")
    max_length: int | None = Field(default=None, gt=0, description="Token limit for this task's examples.")
    loss_weight: float = Field(
        default=1.0,
        ge=0,
        description="Multiplies this task's loss, in task batches and mixed ones (where each task's loss also counts by its "
        "share of the batch); 0 leaves the task's own parameters untouched.",
    )
    probes: dict[str, ProbeSection] = Field(
        default_factory=dict,
        description="Extra evaluation sets by name, scored with the task's metrics and, under learned routing, routing "
        "accuracy against the task's own adapter (at the end of the run, and by `mtkit eval --probe NAME`).",
    )
    held_out: bool = Field(
        default=False,
        description="Held out of the library: phases without `few_shot` never draw its examples (its adapter, if it has one, "
        "is never trained there) nor score it; phases with `few_shot` draw only held-out tasks, k examples each, and "
        "score only them (a library benchmark: what a library of adapters gives a task it was not trained on).",
    )

    @field_validator("metrics")
    @classmethod
    def _some_metric(cls, metrics: list[Any]) -> list[Any]:
        if not metrics:
            raise ValueError(
                "an empty list scores nothing; name at least one metric (e.g. metrics = [\"accuracy\"]; "
                "see 'mtkit list-components --kind metric') or leave the key out for the default"
            )
        return metrics


class Recipe(Section):
    run: RunSection = Field(default_factory=RunSection, description="Run-wide settings.")
    backbone: ComponentTable = Field(description="The shared pretrained or from-scratch transformer.")
    adapters: dict[str, ComponentTable] = Field(default_factory=dict, description="Adapters by id.")
    libraries: dict[str, ComponentTable] = Field(
        default_factory=dict,
        description="Libraries of saved adapters by label: an adapter `type` that can import saved adapters and its "
        "params, one of which says where they are (a directory or a glob; see `mtkit show adapter TYPE`); each saved "
        "adapter becomes an adapter named after its folder, with the table's other params. Relative paths are read "
        "from the working directory.",
    )
    combiner: ComponentTable = Field(
        default_factory=lambda: ComponentTable(**_DEFAULTS["combiner"]),
        description=f"How adapters at a site combine when a phase routes `learned` (default {defaults.COMBINER}).",
    )
    scheduler: ComponentTable = Field(
        default_factory=lambda: ComponentTable(**_DEFAULTS["scheduler"]), description="Which task each batch draws from."
    )
    balancer: ComponentTable = Field(
        default_factory=lambda: ComponentTable(**_DEFAULTS["balancer"]),
        description=f"How the tasks' losses (or their gradients on shared parameters) become one update (default {defaults.BALANCER}).",
    )
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
            problems += [f"{kind} id {i!r} must be a Python identifier" for i in ids if not re.match(ID_PATTERN, i)]
        for name, task in self.tasks.items():
            if task.adapter is not None and task.adapter not in self.adapters:
                problems.append(f"tasks.{name}.adapter {task.adapter!r} is not an adapter id ({_known(self.adapters)})")
        names = [p.name for p in self.phases]
        problems += [f"phase name {n!r} is used twice" for n in sorted({n for n in names if names.count(n) > 1})]
        for i, phase in enumerate(self.phases):
            problems += [f"phases.{i}.train: {msg}" for msg in selector_problems(phase.train, self.adapters, self.tasks)]
            for task, adapter in phase.task_adapters.items():
                if task not in self.tasks:
                    problems.append(f"phases.{i}.task_adapters.{task}: not a task of the recipe ({_known(self.tasks)})")
                elif adapter not in self.adapters:
                    problems.append(f"phases.{i}.task_adapters.{task}: {adapter!r} is not an adapter id ({_known(self.adapters)})")
            if phase.fresh_heads and not problems and not self.trained_heads(phase):
                problems.append(
                    f"phases.{i}.fresh_heads: the phase trains no head (add \"heads\" or \"heads.TASK\" to phases.{i}.train, "
                    "outside `freeze`), so new heads would stay untrained"
                )
        problems += [f"freeze: {msg}" for msg in selector_problems(self.freeze, self.adapters, self.tasks)]
        problems += self._held_out_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _held_out_problems(self) -> list[str]:
        held_out = self.held_out_tasks()
        few_shot = [i for i, phase in enumerate(self.phases) if phase.few_shot is not None]
        problems = []
        if few_shot and not held_out:
            problems += [
                f"phases.{i}.few_shot: the recipe holds no task out, so the phase would draw nothing; set "
                "tasks.TASK.held_out = true on the tasks the library is tested on, or remove few_shot"
                for i in few_shot
            ]
        for i, phase in enumerate(self.phases):
            if phase.trains and held_out and not self.phase_tasks(phase):
                problems.append(
                    f"phases.{i}: the phase trains but draws from no task (every task it could draw is held out); give "
                    f"it few_shot = {{examples = K}} to train on the held-out tasks, or set phases.{i}.steps = 0"
                )
        return problems

    def held_out_tasks(self) -> list[str]:
        """The tasks held out of the library (`tasks.X.held_out`), in recipe order."""
        return [name for name, task in self.tasks.items() if task.held_out]

    def scored_tasks(self, phase: PhaseSection) -> list[str]:
        """The tasks `phase`'s evaluation scores: the held-out tasks in a few_shot phase, else the others."""
        return [name for name, task in self.tasks.items() if task.held_out == (phase.few_shot is not None)]

    def trained_heads(self, phase: PhaseSection) -> list[str]:
        """The tasks whose heads `phase` trains (its `heads` selectors, less those `freeze` names)."""
        trained = selected_tasks(phase.train, list(self.tasks)) - selected_tasks(self.freeze, list(self.tasks))
        return [task for task in self.tasks if task in trained]

    def phase_tasks(self, phase: PhaseSection) -> list[str]:
        """The tasks `phase` draws training batches from: every task it scores (the held-out tasks in a few_shot phase,
        else the others), unless it trains heads only, then the tasks of those heads (another task's loss would reach
        no parameter the phase trains)."""
        tasks = self.scored_tasks(phase)
        if phase.train and heads_only(phase.train):
            heads = self.trained_heads(phase)
            return [task for task in tasks if task in heads]
        return tasks

    def adapter_for_task(self, task: str, phase: PhaseSection | None = None) -> str | None:
        """The adapter that serves `task` under oracle routing (in `phase`, if it routes the task elsewhere)."""
        if phase is not None and task in phase.task_adapters:
            return phase.task_adapters[task]
        explicit = self.tasks[task].adapter
        if explicit is not None:
            return explicit
        if task in self.adapters:
            return task
        return next(iter(self.adapters)) if len(self.adapters) == 1 else None


def _known(ids: Mapping[str, Any]) -> str:
    return f"known: {', '.join(sorted(ids))}" if ids else "the recipe defines none"


def _expand(node: Any, parts: Sequence[str], path: str) -> Iterator[tuple[str, Any]]:
    if not parts:
        yield path, node
        return
    part, rest = parts[0], parts[1:]
    join = (lambda key: f"{path}.{key}") if path else (lambda key: str(key))
    if part == "*":
        for key, value in (node.items() if isinstance(node, Mapping) else ()):
            yield from _expand(value, rest, join(key))
    elif part == "#":
        for index, value in enumerate(node if isinstance(node, list) else ()):
            yield from _expand(value, rest, join(index))
    elif isinstance(node, Mapping) and part in node:
        yield from _expand(node[part], rest, join(part))


def _with_defaults(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The raw recipe with the default component tables filled in where it leaves them out."""
    data = dict(raw)
    for key in ("combiner", "scheduler", "balancer"):
        if data.get(key) is None:
            data[key] = dict(_DEFAULTS[key])
    tasks = data.get("tasks")
    if isinstance(tasks, Mapping):
        data["tasks"] = {
            name: ({**task, "metrics": list(_DEFAULTS["tasks.*.metrics"])} if isinstance(task, Mapping) and "metrics" not in task else task)
            for name, task in tasks.items()
        }
    return data


def component_tables(raw: Mapping[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """Every component table of a raw recipe as (key path, kind, table), defaults included, found best-effort
    (structure problems are pass 1's to report); a metric named by a bare string is the table {type = name}."""
    data = _with_defaults(raw)
    for pattern, kind in TABLES:
        for path, table in _expand(data, pattern.split("."), ""):
            if table is None:
                continue
            yield path, kind, {"type": table} if isinstance(table, str) else table
