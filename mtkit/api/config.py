"""Base classes for component configs. Pydantic only: importing this never imports torch."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mtkit.api.errors import MtkitError

__all__ = [
    "KINDS",
    "AdapterConfig",
    "BalancerConfig",
    "CombinerConfig",
    "ComponentConfig",
    "DatasetConfig",
    "Kind",
    "RepresentationSource",
]

Kind = Literal["backbone", "adapter", "combiner", "head", "scheduler", "dataset", "metric", "balancer"]
KINDS: tuple[Kind, ...] = ("backbone", "adapter", "combiner", "head", "scheduler", "dataset", "metric", "balancer")


class ComponentConfig(BaseModel):
    """Params of one component as written beside `type` in a recipe table.

    Unknown keys are rejected and configs are immutable once validated.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class AdapterConfig(ComponentConfig):
    """Fields every adapter shares: which Linear sites of the backbone it attaches to.

    `aux_loss_names` declares the auxiliary losses the adapter adds (a mixture's load balance), so that a recipe's
    `phases.N.aux_losses` can be checked without importing the adapter (or torch).
    """

    aux_loss_names: ClassVar[tuple[str, ...]] = ()

    target_modules: list[str] = Field(
        default_factory=lambda: ["query", "value"],
        min_length=1,
        description="Linear sites to adapt: a pattern matches a site whose dotted name ends with it "
        "(`query`, `attention.output.dense`); a pattern starting with `re:` is a regular expression "
        "searched in the full name.",
    )
    layers: list[int] | None = Field(
        default=None,
        description="Only adapt sites inside these backbone layers (0-based); all layers if unset.",
    )

    @classmethod
    def library_members(cls, params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """The adapters a recipe's `libraries.<label>` table of this type declares, by adapter id: each one's params
        (without `type`), from the table's `params` (already valid for this config class).

        Called while the recipe resolves, before anything is built. A type that imports saved adapters (e.g. from a
        directory of saved folders) overrides this; the default says this type cannot.
        """
        raise MtkitError("this adapter type cannot import a library of saved adapters", key="type")

    @field_validator("target_modules")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if pattern.startswith("re:"):
                try:
                    re.compile(pattern[3:])
                except re.error as exc:
                    raise ValueError(f"pattern {pattern!r} is not a valid regular expression ({exc})") from None
        return patterns


class CombinerConfig(ComponentConfig):
    """Params of a combiner. `aux_loss_names` declares the auxiliary losses it adds, `trainable` whether it has
    parameters and `has_temperature` whether it reads a temperature, so that a recipe's `phases.N.aux_losses`, `train`
    and `temperature` can be checked without importing the combiner (or torch)."""

    aux_loss_names: ClassVar[tuple[str, ...]] = ()
    trainable: ClassVar[bool] = True
    """False for a combiner without parameters (oracle, uniform): a phase cannot train it (`train = ["combiner"]`)."""
    has_temperature: ClassVar[bool] = False
    """True for a combiner that reads its `temperature` buffer (a softmax over adapters): only such a combiner may be
    given a phase's temperature schedule (`phases.N.temperature`)."""


class BalancerConfig(ComponentConfig):
    """Params of a balancer. Every balancer can log the tasks' gradients on the shared parameters (`diagnostics_every`).

    `needs_mixed_batches` says whether the balancer compares the tasks of one batch (gradient balancers, GradNorm):
    a phase drawing one task per batch would give it nothing to compare, so validation refuses that pairing
    without importing the balancer (or torch).
    """

    needs_mixed_batches: ClassVar[bool] = False

    diagnostics_every: int = Field(
        default=0,
        ge=0,
        description="Every this many steps, also compute each task's gradient on the shared trained parameters and log "
        "their norms and pairwise cosines (metrics.jsonl, TensorBoard, a plot in the report); costs one extra backward "
        "pass per task on those steps; 0 = never.",
    )


class DatasetConfig(ComponentConfig):
    """Fields every dataset shares: how train and evaluation splits are made and capped."""

    test_size: float = Field(
        default=0.1, gt=0, lt=1, description="Share of examples held out when the source has no test split."
    )
    split_seed: int = Field(default=0, ge=0, description="Seed of the held-out split (recorded in the run).")
    validation_size: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Share of the training examples set aside as a validation split (seeded, stratified by label "
        "where it can be), scored by phases with `eval_every`; none by default.",
    )
    max_train_examples: int | None = Field(
        default=None, gt=0, description="Keep at most this many training examples (a seeded sample)."
    )
    max_eval_examples: int | None = Field(
        default=None, gt=0, description="Keep at most this many held-out (and validation) examples (a seeded sample)."
    )


RepresentationSource = Annotated[
    str,
    Field(
        pattern=r"^(embeddings|frozen_pass|layer:\d+|frozen_layer:\d+)$",
        description="Where the input representation comes from: `embeddings` (mean-pooled input embeddings, "
        "no extra pass), `layer:N` (mean-pooled hidden state after layer N; adapters then act from layer N+1 "
        "on, still one pass), `frozen_layer:N` (mean-pooled hidden state after layer N of the frozen backbone, "
        "a partial extra pass that stops there: contextual, adapters act at every layer, costs layers 0-N once "
        "more) or `frozen_pass` (a separate full pass of the frozen backbone, as in the DYNAMO and TaskWeaver "
        "papers, about twice the cost).",
    ),
]
