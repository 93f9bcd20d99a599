"""Configs of the built-in combiners (pydantic only, so listing never imports torch)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from mtkit import CombinerConfig, RepresentationSource


class OracleCombinerConfig(CombinerConfig):
    """Each sample's task id picks its task's adapter (batches may mix tasks)."""

    trainable: ClassVar[bool] = False


class UniformCombinerConfig(CombinerConfig):
    """Every adapter gets the same weight 1/K (an ablation baseline)."""

    trainable: ClassVar[bool] = False


class RandomCombinerConfig(CombinerConfig):
    """Each sample goes to adapters drawn uniformly at random (an ablation baseline)."""

    trainable: ClassVar[bool] = False

    top_k: int = Field(default=1, gt=0, description="Adapters drawn per sample, each weighted 1/top_k.")


class PerTaskFusionConfig(CombinerConfig):
    """Options the fusing combiners (weighted, gating, fusion_attention) share: per-task copies."""

    per_task: bool = Field(
        default=False,
        description="One copy of the combiner's parameters per target task, picked by the sample's task id (AdapterFusion's "
        "per-task fusion), instead of one shared copy that must tell the tasks apart from the input.",
    )
    own_adapter_init: float = Field(
        default=0.0,
        ge=0,
        description="per_task only: a learned score bias towards the sample's own task adapter, starting at this value "
        "(0: start as the plain average of the adapters, as AdapterFusion does; 5: start at about the own adapter alone, "
        "so fusion begins from the single-adapter model and learns what the others add).",
    )

    @model_validator(mode="after")
    def _own_needs_per_task(self) -> PerTaskFusionConfig:
        if self.own_adapter_init and not self.per_task:
            raise ValueError("own_adapter_init needs per_task = true (the own adapter is known from the sample's task)")
        return self


class WeightedCombinerConfig(PerTaskFusionConfig):
    """Learned weights over adapters: softmax of parameters, one set or one per task."""


class GatingCombinerConfig(PerTaskFusionConfig):
    """A learned gate per site: per-token adapter weights from the site input (AdapterFusion gating)."""

    activation: Literal["softmax", "sigmoid"] = Field(
        default="softmax", description="softmax: weights sum to 1 over adapters; sigmoid: each adapter gated on its own in [0, 1]."
    )


class RouterCombinerConfig(CombinerConfig):
    """DYNAMO-style router: an MLP on a pooled input representation outputs adapter probabilities."""

    aux_loss_names: ClassVar[tuple[str, ...]] = ("load_balance", "entropy", "efficiency", "consistency", "task_supervision")

    source: RepresentationSource = Field(
        default="embeddings",
        description="Input representation the router reads. Default `embeddings`: available before the first "
        "adapter site, so one forward pass serves routing and every adapter.",
    )
    hidden_dim: int = Field(default=128, gt=0, description="Width of the router MLP's hidden layers.")
    num_layers: int = Field(default=3, ge=1, le=8, description="Linear layers in the router MLP.")
    dropout: float = Field(default=0.1, ge=0, lt=1, description="Dropout between the MLP's layers during training.")
    normalize_input: bool = Field(default=True, description="Layer-normalise the representation before the MLP.")
    hard: bool = Field(
        default=False,
        description="Training forward uses one-hot (top-k: equal 1/k) weights with straight-through gradients of the soft ones.",
    )
    top_k: int | None = Field(
        default=None,
        gt=0,
        description="Keep only the k most probable adapters per sample (renormalised) in training and evaluation; "
        "unset: all adapters in training, argmax at evaluation.",
    )
    gumbel: bool = Field(default=True, description="Add Gumbel noise to the logits during training (Gumbel-softmax).")
    temperature: float = Field(default=1.0, gt=0, description="Softmax temperature until the trainer sets the phase's schedule.")


class FusionAttentionCombinerConfig(PerTaskFusionConfig):
    """AdapterFusion: per site, attention from the site output over the adapters' deltas."""

    aux_loss_names: ClassVar[tuple[str, ...]] = ("value_identity",)

    projection_dim: int | None = Field(
        default=None, gt=0, description="Width of query and key projections (default: the site's output size)."
    )
    value_projection: bool = Field(default=True, description="Learn a value projection of each delta (initialised to identity).")
    temperature: float = Field(default=1.0, gt=0, description="Softmax temperature until the trainer sets the phase's schedule.")
