"""The abstract component interfaces, one per kind. No concrete component lives here.

Adapters and combiners, with the maths they share, have modules of their own (mtkit/api/adapter.py,
mtkit/api/combiner.py, mtkit/api/lowrank.py); mtkit/api/kinds.py holds the table of all kinds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from mtkit.api.config import BalancerConfig, ComponentConfig, DatasetConfig
from mtkit.api.errors import MtkitError
from mtkit.api.sites import Site

if TYPE_CHECKING:
    from datasets.dataset_dict import DatasetDict

__all__ = [
    "ROUTING_MASK",
    "TRUNCATED",
    "Backbone",
    "BackboneOutput",
    "Balancer",
    "DatasetSource",
    "Head",
    "HeadOutput",
    "HfModelBackbone",
    "Metric",
    "ModelAccess",
    "Resampler",
    "Scheduler",
    "TaskInfo",
    "TaskLosses",
    "mean_resampler",
    "pad_batch",
]


@dataclass
class BackboneOutput:
    hidden: Tensor  # (B, T, D) last hidden state
    logits: Tensor | None = None  # (B, T, V) for generative backbones


@dataclass
class HeadOutput:
    loss: Tensor | None
    logits: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskInfo:
    """What a head learns about its task at build time."""

    name: str
    index: int
    label_names: tuple[str, ...] | None = None


class Backbone(nn.Module, ABC):
    """A transformer plus its tokenizer; adapters attach to its Linear sites."""

    kind: ClassVar[str] = "backbone"
    name: ClassVar[str]
    config_class: ClassVar[type[ComponentConfig]]
    tokenizer: Any
    generative: ClassVar[bool] = False

    @property
    @abstractmethod
    def hidden_size(self) -> int: ...

    @abstractmethod
    def layers(self) -> Sequence[nn.Module]:
        """The transformer blocks in order (for layer-wise learning rates, freezing, layer:N sources)."""

    @abstractmethod
    def embeddings(self) -> nn.Module:
        """The module whose output is the (B, T, D) input embedding; called with the input ids (B, T)."""

    @property
    def activation_checkpointing(self) -> bool:
        """Whether the backbone recomputes its layers' activations in the backward pass (then every per-forward decision
        must be made before the pass: see Combiner.begin)."""
        return False

    @abstractmethod
    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> BackboneOutput: ...

    def sites(self) -> dict[str, Site]:
        """Every nn.Linear inside the layers, by dotted name."""
        names = {id(module): name for name, module in self.named_modules()}
        found: dict[str, Site] = {}
        for index, layer in enumerate(self.layers()):
            prefix = names[id(layer)]
            for sub, module in layer.named_modules():
                if isinstance(module, nn.Linear):
                    full = f"{prefix}.{sub}"
                    found[full] = Site(full, module.in_features, module.out_features, index)
        return found

    def generate(self, input_ids: Tensor, attention_mask: Tensor, **kwargs: Any) -> Tensor:
        """Token ids continuing each prompt (generative backbones only)."""
        raise NotImplementedError(f"backbone {self.name!r} does not generate text")


@runtime_checkable
class HfModelBackbone(Protocol):
    """Capability: the backbone wraps a Hugging Face transformers model (PEFT export and import, checkpointing).

    Site names are module paths inside the backbone; inside the wrapped model they lose this prefix.
    """

    def hf_model_path(self) -> str:
        """The dotted attribute path of the wrapped transformers model inside the backbone, e.g. 'model'."""
        ...


class ModelAccess(Protocol):
    """What a head may ask of the assembled model when predicting."""

    def backbone_output(self, batch: Mapping[str, Any]) -> BackboneOutput: ...

    def generate(self, batch: Mapping[str, Any], **kwargs: Any) -> Tensor: ...


def pad_batch(features: Mapping[str, list[Any]], pad_id: int, label_pad: int = -100) -> dict[str, Any]:
    """Right-pad list-valued fields into tensors; scalars become a tensor, strings stay lists."""
    batch: dict[str, Any] = {}
    for key, values in features.items():
        first = values[0]
        if isinstance(first, list) and (not first or isinstance(first[0], int | float)):
            width = max(len(v) for v in values)
            fill = 0 if key == "attention_mask" else pad_id if key == "input_ids" else label_pad
            batch[key] = torch.tensor([list(v) + [fill] * (width - len(v)) for v in values])
        elif isinstance(first, int | float | bool):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch


TRUNCATED = "truncated"
"""An optional column of `Head.encode`'s output: True where the input was cut to max_length (mtkit counts them per task)."""

ROUTING_MASK = "routing_mask"
"""An optional key of `Head.collate`'s batch: (B, T) the tokens a pooled input representation reads, where they are
fewer than the attention mask's. An LM head marks the prompt without its answer, what the model has seen when it
routes a prompt at generation, so that routers learn from the representation they are evaluated on."""


class Head(nn.Module, ABC):
    """Maps backbone outputs to one task's predictions and loss."""

    kind: ClassVar[str] = "head"
    name: ClassVar[str]
    config_class: ClassVar[type[ComponentConfig]]
    input_fields: ClassVar[tuple[str, ...]] = ("input_ids", "attention_mask")
    """Fields of an encoded example that go into a batch."""

    def __init__(self, config: ComponentConfig, *, backbone: Backbone, task: TaskInfo) -> None:
        super().__init__()
        self.config = config
        self.task = task

    @abstractmethod
    def encode(self, examples: Mapping[str, list[Any]], tokenizer: Any, max_length: int) -> dict[str, list[Any]]:
        """Tokenize a batch of raw examples (a `datasets.map(batched=True)` function)."""

    def collate(self, features: Mapping[str, list[Any]], tokenizer: Any) -> dict[str, Any]:
        """Encoded examples (columns of lists) -> a batch of tensors."""
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return pad_batch({k: features[k] for k in self.input_fields if k in features}, pad_id)

    @abstractmethod
    def forward(self, output: BackboneOutput, batch: Mapping[str, Any]) -> HeadOutput: ...

    @abstractmethod
    def predict(self, model: ModelAccess, batch: Mapping[str, Any]) -> list[Any]:
        """Predictions for a batch, in the form the task's metrics compare with references."""

    @abstractmethod
    def references(self, batch: Mapping[str, Any]) -> list[Any]:
        """The gold answers of a batch, as metrics expect them."""

    def example_from_text(self, text: str) -> dict[str, Any]:
        """A raw example holding one new input (for `mtkit predict`)."""
        raise MtkitError(f"head {self.name!r} cannot predict from a line of text (it does not implement example_from_text)")

    def validate_example(self, example: Mapping[str, Any]) -> str | None:
        """A problem with one raw example (missing field, label out of range), or None."""
        return None


class Scheduler(ABC):
    """Decides which task each batch (or each sample of a mixed batch) draws from."""

    kind: ClassVar[str] = "scheduler"
    name: ClassVar[str]
    config_class: ClassVar[type[ComponentConfig]]

    def __init__(self, config: ComponentConfig, *, task_sizes: Sequence[int]) -> None:
        self.config = config
        self.task_sizes = list(task_sizes)

    @abstractmethod
    def probabilities(self, step: int, num_steps: int) -> list[float]:
        """Task probabilities at `step` (0-based) of a phase of `num_steps` steps."""


class DatasetSource(ABC):
    """A source of raw examples with the fields a head needs."""

    kind: ClassVar[str] = "dataset"
    name: ClassVar[str]
    config_class: ClassVar[type[DatasetConfig]]

    def __init__(self, config: DatasetConfig) -> None:
        self.config = config

    @abstractmethod
    def load(self) -> DatasetDict:
        """The examples: a `train` split, and a `test` split if the source has one."""

    @property
    def label_names(self) -> list[str] | None:
        """Class names for classification-like tasks, in label-id order."""
        return None


class Metric(ABC):
    """Scores predictions against references."""

    kind: ClassVar[str] = "metric"
    name: ClassVar[str]
    config_class: ClassVar[type[ComponentConfig]]

    def __init__(self, config: ComponentConfig) -> None:
        self.config = config

    @abstractmethod
    def compute(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        """Scores by name (the metric's name, or name_suffix for several)."""

    def resampler(self, predictions: Sequence[Any], references: Sequence[Any]) -> Resampler | None:
        """Scores of any resample of the examples, from per-example statistics computed once (bootstrap intervals).

        Called with every index once it must give `compute`'s scores, which it then stands in for, so costly
        metrics (pass@k runs programs) score each example once. Metrics that are means over examples return
        `mean_resampler(...)`; corpus metrics can sum per-sentence statistics (as sacrebleu's own bootstrap does).
        None (the default): `compute` is called again on each resample.
        """
        return None


Resampler = Callable[[Sequence[int]], dict[str, float]]
"""Scores of the resample of the examples at the given indices (repeats allowed)."""


def mean_resampler(per_example: Mapping[str, Sequence[float]]) -> Resampler:
    """The resampler of scores that are means of per-example values (`per_example`: score name -> one value per example)."""
    values = {name: list(v) for name, v in per_example.items()}

    def scores(index: Sequence[int]) -> dict[str, float]:
        return {name: sum(v[i] for i in index) / len(index) if index else 0.0 for name, v in values.items()}

    return scores


@dataclass(frozen=True)
class TaskLosses:
    """One training step's task losses, as a balancer receives them.

    `losses`: each task's mean loss over its samples in the batch (only tasks with samples in it, and a
    `loss_weight` above 0). `scales`: what the `static` balancer multiplies each loss by, the task's `loss_weight`
    times its share of the batch's samples (so a batch of one task has scale `loss_weight`, and a mixed batch
    counts every sample alike). `loss_weights`: the tasks' `loss_weight` alone. `gradient_norms`, only for a
    balancer that sets `needs_gradient_norms`: the norm of each task's gradient (of `loss_weight` x its loss) on
    the shared trained parameters, detached.
    """

    losses: Mapping[str, Tensor]
    scales: Mapping[str, float]
    loss_weights: Mapping[str, float]
    gradient_norms: Mapping[str, Tensor] | None = None


class Balancer(nn.Module, ABC):
    """Turns a step's task losses, or the tasks' gradients on the shared trained parameters, into one update.

    A loss-weighting balancer (`combines = "losses"`) implements `combine_losses`: one loss, which the trainer
    differentiates once. A gradient balancer (`combines = "gradients"`) implements `combine_gradients`: the trainer
    differentiates each task's loss on its own and hands it the (K, P) matrix of the tasks' gradients on the shared
    trained parameters (those the losses of several tasks reach); the (P,) vector it returns becomes their gradient.
    Either way a parameter that one task's loss alone reaches (its head, its own adapter under oracle routing)
    receives that task's gradient only, as `static` would give it. A batch holding one task leaves a gradient
    balancer nothing to combine: its one row is the update.

    A balancer's parameters train with the phase that uses it (at the phase's learning rate times `lr_scale`);
    its parameters and buffers are its state, saved in checkpoints and restored on resume.
    """

    kind: ClassVar[str] = "balancer"
    name: ClassVar[str]
    config_class: ClassVar[type[BalancerConfig]]
    combines: ClassVar[Literal["losses", "gradients"]] = "losses"
    needs_gradient_norms: ClassVar[bool] = False
    """True to receive `TaskLosses.gradient_norms` (one extra backward pass per task and step)."""
    multi_process: ClassVar[bool] = False
    """True if it is correct in several processes (DDP); state kept per process would drift apart, so the
    trainer refuses other balancers under `accelerate launch` with more than one process."""

    def __init__(self, config: BalancerConfig, *, task_names: Sequence[str]) -> None:
        super().__init__()
        self.config = config
        self.task_names = tuple(task_names)

    @property
    def lr_scale(self) -> float:
        """The learning rate of the balancer's own parameters, relative to the phase's."""
        return 1.0

    def combine_losses(self, losses: TaskLosses) -> Tensor:
        """One scalar loss from the tasks' losses (loss-weighting balancers)."""
        raise NotImplementedError(f"balancer {self.name!r} combines gradients, not losses")

    def combine_gradients(self, jacobian: Tensor, tasks: Sequence[str]) -> Tensor:
        """The shared parameters' update direction (P,) from the tasks' gradients `jacobian` (K, P), one row per
        task of `tasks` (K >= 2), each the gradient of `loss_weight` x the task's loss (gradient balancers)."""
        raise NotImplementedError(f"balancer {self.name!r} combines losses, not gradients")

    def logs(self) -> dict[str, float]:
        """Values to log after a step, e.g. the weight each task got (`weight/sentiment`)."""
        return {}
