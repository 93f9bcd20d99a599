"""Configs of the built-in combiners (pydantic only, so listing never imports torch)."""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

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

    has_temperature: ClassVar[bool] = True

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

    has_temperature: ClassVar[bool] = True

    aux_loss_names: ClassVar[tuple[str, ...]] = ("value_identity",)

    projection_dim: int | None = Field(
        default=None, gt=0, description="Width of query and key projections (default: the site's output size)."
    )
    value_projection: bool = Field(default=True, description="Learn a value projection of each delta (initialised to identity).")
    temperature: float = Field(default=1.0, gt=0, description="Softmax temperature until the trainer sets the phase's schedule.")


class ArrowCombinerConfig(CombinerConfig):
    """Arrow: zero-shot per-token routing to the LoRAs whose top right singular vector aligns with the token."""

    has_temperature: ClassVar[bool] = True

    trainable: ClassVar[bool] = False

    top_k: int = Field(default=3, gt=0, description="LoRAs each token is routed to (all of them when fewer are attached at a site).")
    temperature: float = Field(
        default=1.0, gt=0, description="Softmax temperature over the kept |<prototype, token>| scores, until a phase's schedule sets it."
    )
    general_adapters: list[str] = Field(
        default_factory=list,
        description="GenKnowSub: adapters (ids) holding general knowledge; the mean of their A and of their B is subtracted "
        "from every other adapter's A and B before routing and applying, and they are not routed to themselves. Empty: plain Arrow.",
    )


MergeMethod = Literal[
    "linear", "ties", "dare_linear", "dare_ties", "magnitude_prune", "svd", "ties_svd", "dare_linear_svd", "dare_ties_svd",
    "magnitude_prune_svd", "cat",
]
PRUNING_METHODS = {m for m in get_args(MergeMethod) if m.startswith(("ties", "dare", "magnitude"))}
"""Methods that prune each adapter's entries first, so they need a density."""


class MergeCombinerConfig(CombinerConfig):
    """Merge the LoRAs into one LoRA per site (PEFT's add_weighted_adapter: linear, TIES, DARE, magnitude pruning, SVD)."""

    trainable: ClassVar[bool] = False

    method: MergeMethod = Field(
        default="svd",
        description="How the LoRAs merge, as PEFT's add_weighted_adapter combination_type: linear, ties, dare_linear, dare_ties "
        "and magnitude_prune combine the A matrices and the B matrices separately (equal ranks needed); svd and the *_svd "
        "methods combine the full updates B A and keep the top svd_rank singular directions; cat stacks the LoRAs (exact, rank = sum).",
    )
    adapters: list[str] | None = Field(
        default=None, min_length=1, description="The adapters (ids) to merge, in order; default: every adapter of the recipe."
    )
    weight: float = Field(default=1.0, description="Weight of every merged adapter that `weights` does not name (negative subtracts).")
    weights: dict[str, float] = Field(default_factory=dict, description="Per-adapter weights by id, overriding `weight`.")
    density: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Share of each matrix's entries kept before merging (ties, dare_*, magnitude_prune and their *_svd forms): "
        "the largest by magnitude (ties, magnitude_prune) or a random draw rescaled by 1/density (dare); 1 keeps all.",
    )
    majority_sign_method: Literal["total", "frequency"] = Field(
        default="total", description="TIES sign election (ties, dare_ties and their *_svd forms): by summed values or by counts."
    )
    svd_rank: int | None = Field(default=None, gt=0, description="Rank of the merged LoRA for svd methods (default: the largest merged rank).")
    svd_clamp: float | None = Field(
        default=None, gt=0, lt=1, description="svd methods: clamp the factors' entries at this quantile of their magnitudes (none: no clamping)."
    )
    seed: int = Field(default=0, ge=0, description="Seed of DARE's random draws (each site draws from its own generator, seeded by this and its name).")

    @model_validator(mode="after")
    def _density_needed(self) -> MergeCombinerConfig:
        if self.method in PRUNING_METHODS and self.density is None:
            raise ValueError(f"method {self.method!r} prunes each adapter first: set density (the share of entries kept, e.g. 0.5)")
        if self.method not in PRUNING_METHODS and self.density is not None:
            raise ValueError(f"density applies to pruning methods ({', '.join(sorted(PRUNING_METHODS))}), not to {self.method!r}; remove it")
        return self


class LoraHubCombinerConfig(CombinerConfig):
    """LoraHub: one weight per LoRA found by gradient-free search (CMA-ES) on a few examples; the composed LoRA's A and B
    are the weighted sums of the LoRAs' A and B. The search runs in a phase with `fit_combiner = true`."""

    trainable: ClassVar[bool] = False

    examples: int = Field(default=5, gt=0, description="Few-shot training examples per task of the fitting phase that the search scores weights on.")
    budget: int = Field(
        default=40, gt=0, description="Loss evaluations the search may spend (CMA-ES stops after the generation that reaches it)."
    )
    population: int | None = Field(
        default=None, ge=2, description="Candidates per CMA-ES generation (default: CMA-ES's own, 4 + 3 ln K for K adapters)."
    )
    penalty: float = Field(
        default=0.05, ge=0, description="Weight of the L1 penalty, times the mean absolute adapter weight, added to the few-shot loss."
    )
    bound: float = Field(default=1.5, gt=0, description="Each weight is searched in [-bound, bound].")
    sigma: float = Field(default=0.5, gt=0, description="CMA-ES's initial step size.")
    init: float = Field(default=0.0, description="Every weight's starting value (0: the search starts from the bare backbone).")

    @model_validator(mode="after")
    def _init_in_bounds(self) -> LoraHubCombinerConfig:
        if abs(self.init) > self.bound:
            raise ValueError(f"init {self.init} lies outside [-bound, bound] = [{-self.bound}, {self.bound}]; pick an init within it")
        return self


class RetrievalCombinerConfig(CombinerConfig):
    """Retrieval (LoraRetriever): each adapter is described by the mean embedding of a few of its task's inputs; a sample
    goes to the adapters nearest its own embedding (top-k, softmax of cosines over a temperature). The descriptions
    are computed in a phase with `fit_combiner = true`."""

    has_temperature: ClassVar[bool] = True

    trainable: ClassVar[bool] = False

    source: RepresentationSource = Field(
        default="frozen_pass",
        description="The embedding of an input: its pooled representation from this source. Default `frozen_pass`, the "
        "frozen backbone's mean last hidden state (a sentence embedding; one extra pass), as LoraRetriever embeds with a "
        "separate encoder; `embeddings` costs nothing extra but tells inputs apart only by their words.",
    )
    examples: int = Field(default=16, gt=0, description="Training examples of each adapter's tasks whose mean embedding describes the adapter.")
    example_files: dict[str, str] = Field(
        default_factory=dict,
        description="Adapter name -> a UTF-8 text file of example inputs, one per line (blank lines skipped; relative paths "
        "start at the working directory): the adapter is described by all of them instead of its tasks' training inputs. "
        "A library imported without tasks is described this way.",
    )
    top_k: int = Field(default=1, gt=0, description="Adapters each sample is routed to.")
    temperature: float = Field(default=0.1, gt=0, description="Softmax temperature over the kept cosines, until a phase's schedule sets it.")


class CatCombinerConfig(CombinerConfig):
    """CAT (LoRA soups): learned scalar weights per site over the frozen adapters, the same for every input, trained on
    the target task's data."""

    init: float | None = Field(
        default=None, description="Every weight's starting value (default 1/K for K adapters: the plain average of the adapters)."
    )


class PhatgooseCombinerConfig(CombinerConfig):
    """PHATGOOSE: a gate vector per adapter and site, trained on the adapter's own task data with the adapter frozen (a
    phase with `fit_combiner = true`); each token goes to the top_k adapters whose normalised gates align best with it."""

    has_temperature: ClassVar[bool] = True

    top_k: int = Field(default=2, gt=0, description="Adapters each token is routed to at each site.")
    temperature: float = Field(
        default=1.0, gt=0, description="Softmax temperature over the kept cosines, until a phase's schedule sets it."
    )
    gate_steps: int = Field(default=100, gt=0, description="Optimiser steps training each adapter's gates.")
    gate_lr: float = Field(default=1e-2, gt=0, description="Learning rate of the gates' training (AdamW).")
    examples: int | None = Field(
        default=None, gt=0, description="Training examples of an adapter's tasks its gates train on (default: all of them)."
    )


class LayerGatesCombinerConfig(CombinerConfig):
    """X-LoRA / MoLE: a small classifier over the frozen backbone's per-token hidden states gives each token weights over
    the frozen adapters, per site (layer-wise) or shared by every site; dense, or top-k."""

    has_temperature: ClassVar[bool] = True

    per_site: bool = Field(
        default=True,
        description="One set of weights per adapted site (X-LoRA's layerwise_scalings; MoLE's per-layer gates); false: "
        "one set per token shared by every site.",
    )
    num_layers: int = Field(default=1, ge=1, le=8, description="Linear layers of the classifier (X-LoRA's xlora_depth), ReLU between them.")
    hidden_dim: int = Field(default=256, gt=0, description="Width of the classifier's hidden layers (X-LoRA's xlora_size; unused with one layer).")
    dropout: float = Field(default=0.2, ge=0, lt=1, description="Dropout after each hidden layer of the classifier in training (X-LoRA's xlora_dropout_p).")
    softmax: bool = Field(default=True, description="Softmax of the classifier's outputs over the adapters (X-LoRA's enable_softmax).")
    temperature: float = Field(default=1.0, gt=0, description="Temperature of that softmax (X-LoRA's softmax_temperature), until a phase's schedule sets it.")
    top_k: int | None = Field(
        default=None, gt=0, description="Keep only each token's top_k adapters at each site (X-LoRA's top_k_lora); unset: every adapter (dense)."
    )
    softmax_top_k: bool = Field(
        default=False, description="With top_k: a softmax over the kept weights (X-LoRA's enable_softmax_topk)."
    )
    scale: float = Field(default=1.0, description="Every adapter's output is multiplied by this (X-LoRA's global_scaling_weight).")

    @model_validator(mode="after")
    def _top_k_softmax(self) -> LayerGatesCombinerConfig:
        if self.softmax_top_k and self.top_k is None:
            raise ValueError("softmax_top_k applies to the kept top_k weights: set top_k as well, or remove softmax_top_k")
        return self
