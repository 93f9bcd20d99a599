"""The recipe's structure (validation pass 1): pydantic models for the TOML tables, and where component tables sit.

Pass 1 checks the structure (known tables and keys, types, references between sections). Pass 2
(mtkit/recipe/resolve.py) looks every component table's `type` up in the registry and validates the rest of
the table with that component's config class.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mtkit.recipe import defaults
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

_ID = r"^[A-Za-z_][A-Za-z0-9_]*$"

ORACLE_ROUTING = "oracle"
"""`phases.N.routing` (and the label of its results) when task ids pick the adapters: the oracle combiner runs."""
LEARNED_ROUTING = "learned"
"""`phases.N.routing` (and the label of its results) when the recipe's combiner decides."""
ROUTINGS = (ORACLE_ROUTING, LEARNED_ROUTING)
BASE_ROUTING = "base"
"""The label of the reference evaluation without any adapter (the backbone alone, same prompts and metrics): never a
phase's routing, scored after a generative run and by `mtkit eval --routing base`."""

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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ComponentTable(BaseModel):
    """A component: its registered `type` and its params side by side."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str = Field(description="Registered name of the component (see `mtkit list-components`).")


class RunSection(_Section):
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
        "(intervals.json); drawn from the run seed; 0: no intervals."
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


class ProbeSection(_Section):
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


class TaskSection(_Section):
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


class ViewSection(_Section):
    """Training inputs shown in another form (same task, same label): contiguous spans of varied length, of tokens or
    of whole sentences."""

    probability: float = Field(default=0.5, ge=0, le=1, description="Share of a phase's training examples replaced by a span.")
    unit: Literal["tokens", "sentences"] = Field(
        default="tokens",
        description="What a span is made of: `tokens` (between min_tokens and max_tokens) or `sentences` (1 to "
        "max_sentences whole consecutive sentences, split after the tokens '.', '!' and '?').",
    )
    min_tokens: int = Field(default=8, gt=0, description="Shortest span, in tokens (special tokens kept apart); unit = tokens.")
    max_tokens: int = Field(
        default=48, gt=0, description="Longest span, in tokens; inputs no longer than a drawn length stay whole; unit = tokens."
    )
    max_sentences: int = Field(
        default=1, gt=0, description="Most sentences in a span; inputs with no more sentences than drawn stay whole; unit = sentences."
    )

    @model_validator(mode="after")
    def _range(self) -> ViewSection:
        if self.max_tokens < self.min_tokens:
            raise ValueError("max_tokens must be at least min_tokens")
        return self


class TemperatureSchedule(_Section):
    start: float = Field(default=1.0, gt=0, description="Temperature at the phase's first step.")
    end: float = Field(default=1.0, gt=0, description="Temperature at its last step (exponential annealing).")

    def at(self, step: int, steps: int) -> float:
        """The temperature at `step` (0-based) of a phase of `steps` steps."""
        return float(self.start * (self.end / self.start) ** (step / max(1, steps - 1)))


class FewShotSection(_Section):
    """What a composition phase may see of the held-out tasks: k training examples each, drawn with a seed."""

    examples: int = Field(
        gt=0,
        description="k: training examples drawn from each held-out task's training split (never its test or validation "
        "split); all of them where the split has fewer. The drawn rows are recorded in data.json.",
    )
    seed: int | None = Field(
        default=None, ge=0, description="Seed of the draw (default: the run seed, so `mtkit ablate --seeds` varies it)."
    )


class PhaseSection(_Section):
    name: str = Field(pattern=_ID, description="Phase name (used in logs, metrics and checkpoints).")
    steps: int | None = Field(
        default=None,
        ge=0,
        description="Optimiser steps in this phase; 0 only evaluates (e.g. the untrained model). Give `steps` or `epochs`.",
    )
    epochs: float | None = Field(
        default=None,
        gt=0,
        description="Instead of `steps`: passes over the training examples of the tasks the phase draws from; resolved to "
        "steps from the task sizes and the effective batch (batch x grad_accumulation x processes), recorded in data.json.",
    )
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
    grad_accumulation: int | None = Field(default=None, gt=0, description="Overrides run.grad_accumulation.")
    routing: Literal["oracle", "learned"] = Field(
        default=ORACLE_ROUTING, description="oracle: task ids pick adapters (the oracle combiner runs); learned: the recipe's combiner decides."
    )
    batching: Literal["task", "mixed"] = Field(default="task", description="task: one task per batch; mixed: tasks drawn per sample.")
    scheduler: ComponentTable | None = Field(default=None, description="Overrides the recipe's task scheduler in this phase.")
    balancer: ComponentTable | None = Field(default=None, description="Overrides the recipe's balancer in this phase.")
    task_adapters: dict[str, str] = Field(
        default_factory=dict,
        description="Under oracle routing in this phase (and its evaluation), route these tasks to another adapter: "
        "{headlines = \"topic\"} serves the headlines task with the topic adapter (a best-single-adapter baseline).",
    )
    aux_losses: dict[str, float] = Field(default_factory=dict, description="Auxiliary loss weights by name (the losses the combiner and the adapters declare).")
    temperature: TemperatureSchedule | None = Field(default=None, description="Combiner temperature schedule.")
    views: ViewSection | None = Field(
        default=None,
        description="Show training inputs as random spans of varied length (classification-style inputs), so that a router "
        "cannot tell tasks apart by the length or shape of their inputs.",
    )
    fit_combiner: bool = Field(
        default=False,
        description="Run the combiner's own training routine at the phase's start (combiners with one: lorahub's "
        "gradient-free search, phatgoose's gates, retrieval's adapter descriptions; see `mtkit show combiner NAME`), "
        "before any optimiser steps; what it learns is saved with the run's weights and its summary in report.md.",
    )
    few_shot: FewShotSection | None = Field(
        default=None,
        description="Make this a composition phase for the held-out tasks (`tasks.X.held_out`): it draws only from them, "
        "k training examples each (`{examples = 8}`), and its evaluation scores only them. Combiners whose routine "
        "reads each adapter's own tasks (`fit_combiner`) still read the library tasks' data; no phase ever sees a "
        "held-out task's test split.",
    )
    evaluate: bool = Field(
        default=True,
        description="Evaluate at the end of the phase (the tasks it scores: every task, or with held-out tasks the "
        "library tasks, or in a `few_shot` phase the held-out ones).",
    )
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
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of steps and epochs (steps = 0 only evaluates)")
        bad = [w for w in self.aux_losses.values() if w < 0]
        if bad:
            raise ValueError("aux_losses weights must be >= 0")
        if self.keep_best is not None and self.eval_every is None:
            raise ValueError("keep_best needs eval_every (how often to score the validation split)")
        if self.trains and not self.train:
            raise ValueError("a phase with steps > 0 needs `train` selectors (use steps = 0 for an evaluation-only phase)")
        if self.few_shot is not None and self.eval_every is not None:
            raise ValueError(
                "eval_every scores validation splits, which in a few_shot phase are the held-out tasks' examples beyond the k "
                "drawn; remove eval_every (and keep_best) from this phase"
            )
        return self

    @property
    def trains(self) -> bool:
        """Whether the phase takes optimiser steps (steps > 0, or epochs)."""
        return self.epochs is not None or (self.steps or 0) > 0

    @property
    def routes_by_task(self) -> bool:
        """Whether task ids pick the adapters in this phase (the oracle runs instead of the recipe's combiner)."""
        return self.routing == ORACLE_ROUTING


def runs_recipe_combiner(phase: Mapping[str, Any]) -> bool:
    """Whether a raw phase table runs or trains the recipe's combiner (what a sweep must share or not)."""
    return phase.get("routing", ORACLE_ROUTING) == LEARNED_ROUTING or "combiner" in (phase.get("train") or [])


class Recipe(_Section):
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
            problems += [f"{kind} id {i!r} must be a Python identifier" for i in ids if not re.match(_ID, i)]
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
