"""The recipe's `[[phases]]` tables (validation pass 1): what a phase trains and how, its views, temperature schedule
and few-shot draw."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from mtkit.recipe.sections import ID_PATTERN, LEARNED_ROUTING, ORACLE_ROUTING, ComponentTable, Section
from mtkit.recipe.selectors import SELECTOR_HELP

__all__ = ["FewShotSection", "PhaseSection", "TemperatureSchedule", "ViewSection", "runs_recipe_combiner"]


class ViewSection(Section):
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


class TemperatureSchedule(Section):
    start: float = Field(default=1.0, gt=0, description="Temperature at the phase's first step.")
    end: float = Field(default=1.0, gt=0, description="Temperature at its last step (exponential annealing).")

    def at(self, step: int, steps: int) -> float:
        """The temperature at `step` (0-based) of a phase of `steps` steps."""
        return float(self.start * (self.end / self.start) ** (step / max(1, steps - 1)))


class FewShotSection(Section):
    """What a composition phase may see of the held-out tasks: k training examples each, drawn with a seed."""

    examples: int = Field(
        gt=0,
        description="k: training examples drawn from each held-out task's training split (never its test or validation "
        "split); all of them where the split has fewer. The drawn rows are recorded in data.json.",
    )
    seed: int | None = Field(
        default=None, ge=0, description="Seed of the draw (default: the run seed, so `mtkit ablate --seeds` varies it)."
    )


class PhaseSection(Section):
    name: str = Field(pattern=ID_PATTERN, description="Phase name (used in logs, metrics and checkpoints).")
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
