"""The abstract component interfaces, one per kind. No concrete component lives here."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from mtkit.config import AdapterConfig, ComponentConfig, DatasetConfig
from mtkit.context import ForwardContext

if TYPE_CHECKING:
    import datasets

__all__ = [
    "INTERFACES",
    "Adapter",
    "AdapterGroup",
    "Backbone",
    "BackboneOutput",
    "Combiner",
    "DatasetSource",
    "Exportable",
    "Head",
    "HeadOutput",
    "Mergeable",
    "Metric",
    "ModelAccess",
    "Scheduler",
    "Site",
    "select_sites",
    "TaskInfo",
    "pad_batch",
]


@dataclass(frozen=True)
class Site:
    """A Linear module of the backbone that adapters may attach to."""

    name: str  # dotted module path inside the backbone
    in_features: int
    out_features: int
    layer: int | None  # index into Backbone.layers(), None outside them


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
        """The module whose output is the (B, T, D) input embedding."""

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


def select_sites(config: AdapterConfig, sites: Mapping[str, Site]) -> dict[str, Site]:
    """The sites an adapter config targets."""

    def matches(name: str, pattern: str) -> bool:
        if pattern.startswith("re:"):
            return re.search(pattern[3:], name) is not None
        return name == pattern or name.endswith("." + pattern)

    return {
        name: site
        for name, site in sites.items()
        if any(matches(name, p) for p in config.target_modules)
        and (config.layers is None or site.layer in config.layers)
    }


class Adapter(nn.Module, ABC):
    """One adapter across its sites: produces a delta for a site's output.

    Several adapters of the same class at a site are computed together by the classmethods
    `mix` (weighted sum of deltas) and `stack` (all deltas); their defaults loop over adapters,
    so a family overrides them with one batched operation.
    """

    kind: ClassVar[str] = "adapter"
    name: ClassVar[str]
    config_class: ClassVar[type[AdapterConfig]]

    def __init__(self, config: AdapterConfig, *, sites: Mapping[str, Site], context_size: int) -> None:
        super().__init__()
        self.config = config
        self.site_names = sorted(sites)

    @staticmethod
    def site_key(site: str) -> str:
        """A module-dict key for a dotted site name."""
        return site.replace(".", "__")

    @abstractmethod
    def delta(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor:
        """The delta at `site` for input x (B, T, Din) and frozen output y (B, T, Dout) -> (B, T, Dout)."""

    def representation_sources(self) -> set[str]:
        """Input representations this adapter reads from the context (see RepresentationSource)."""
        return set()

    @classmethod
    def mix(
        cls, adapters: Sequence[Adapter], site: str, x: Tensor, y: Tensor, weights: Tensor, ctx: ForwardContext
    ) -> Tensor:
        """sum_k weights[..., k] * delta_k, for weights (B, K) or (B, T, K)."""
        out = torch.zeros_like(y)
        for k, adapter in enumerate(adapters):
            w = weights[..., k]
            w = w[:, None, None] if w.dim() == 1 else w.unsqueeze(-1)
            out = out + w * adapter.delta(site, x, y, ctx)
        return out

    @classmethod
    def stack(cls, adapters: Sequence[Adapter], site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor:
        """Every adapter's delta.  -> (B, T, K, Dout)"""
        return torch.stack([a.delta(site, x, y, ctx) for a in adapters], dim=2)


@runtime_checkable
class Mergeable(Protocol):
    """An adapter whose delta is linear in x and can be folded into the base weight."""

    def merge(self, site: str, linear: nn.Linear) -> None: ...

    def unmerge(self, site: str, linear: nn.Linear) -> None: ...


@runtime_checkable
class Exportable(Protocol):
    """An adapter that can write itself in another library's on-disk format (`mtkit export`)."""

    export_formats: tuple[str, ...]

    def export(self, format: str, out_dir: Path, *, backbone: Backbone) -> None: ...


@dataclass
class AdapterGroup:
    """Adapters of one class present at one site, and their columns in the combiner's weights."""

    cls: type[Adapter]
    adapters: list[Adapter]
    columns: list[int]

    def mix(self, site: str, x: Tensor, y: Tensor, weights: Tensor, ctx: ForwardContext) -> Tensor:
        return self.cls.mix(self.adapters, site, x, y, weights[..., self.columns], ctx)

    def stack(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor:
        return self.cls.stack(self.adapters, site, x, y, ctx)

    def routed(self, weights: Tensor) -> AdapterGroup | None:
        """The adapters that some row of `weights` gives a nonzero weight (None if there are none)."""
        used = [i for i, column in enumerate(self.columns) if bool(weights[..., column].any())]
        if not used:
            return None
        return AdapterGroup(self.cls, [self.adapters[i] for i in used], [self.columns[i] for i in used])


class Combiner(nn.Module, ABC):
    """Decides how the deltas of several adapters at a site become one."""

    kind: ClassVar[str] = "combiner"
    name: ClassVar[str]
    config_class: ClassVar[type[ComponentConfig]]
    aux_loss_names: ClassVar[tuple[str, ...]] = ()
    """Names of auxiliary losses it adds to the context; phases weight them by these names."""

    def __init__(
        self,
        config: ComponentConfig,
        *,
        adapter_names: Sequence[str],
        task_names: Sequence[str],
        sites: Mapping[str, Site],
        hidden_size: int,
    ) -> None:
        super().__init__()
        self.config = config
        self.adapter_names = list(adapter_names)
        self.task_names = list(task_names)

    @abstractmethod
    def weights(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor | None:
        """Adapter weights (B, K) or (B, T, K) at `site`; None applies no adapter there."""

    def combine(self, site: str, x: Tensor, y: Tensor, groups: Sequence[AdapterGroup], ctx: ForwardContext) -> Tensor:
        """The site output: y + sum of weighted deltas (override for attention over deltas)."""
        w = self.weights(site, x, y, ctx)
        if w is None:
            return y
        out = y
        for group in groups:
            out = out + group.mix(site, x, y, w, ctx)
        return out

    def representation_sources(self) -> set[str]:
        return set()

    def set_temperature(self, temperature: float) -> None:
        """Called by the trainer every step with the phase's annealed temperature."""


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
        field = getattr(self.config, "text_field", "text")
        return {field: text}

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
    def load(self) -> datasets.DatasetDict:
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


INTERFACES: dict[str, type] = {
    "backbone": Backbone,
    "adapter": Adapter,
    "combiner": Combiner,
    "head": Head,
    "scheduler": Scheduler,
    "dataset": DatasetSource,
    "metric": Metric,
}

