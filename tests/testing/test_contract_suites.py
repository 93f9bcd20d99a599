"""The contract suites catch broken components (so passing them means something)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import pytest
import torch
from pydantic import ConfigDict, Field
from torch import Tensor, nn

from mtkit import (
    BackboneOutput,
    Combiner,
    CombinerSetup,
    ComponentConfig,
    DatasetConfig,
    DatasetSource,
    ForwardContext,
    HeadOutput,
    Metric,
    Scheduler,
    load_registry,
)
from mtkit.testing._tiny import TINY_BERT
from mtkit.testing.backbone import check_backbone
from mtkit.testing.combiner import check_combiner
from mtkit.testing.dataset import check_dataset
from mtkit.testing.head import check_head
from mtkit.testing.metric import check_metric
from mtkit.testing.scheduler import check_scheduler


class PlainConfig(ComponentConfig):
    """No params."""


class UndescribedConfig(ComponentConfig):
    """A field without a description."""

    power: float = 1.0


class OpenConfig(ComponentConfig):
    """Accepts anything."""

    model_config = ConfigDict(extra="allow", frozen=True)


def _scheduler(config_class: type, probs: Any = None) -> type:
    class DemoScheduler(Scheduler):
        name = "demo"

        def probabilities(self, step: int, num_steps: int) -> list[float]:
            n = len(self.task_sizes)
            return probs(step, n) if probs else [1.0 / n] * n

    DemoScheduler.config_class = config_class
    return DemoScheduler


def test_contract_suites_accept_a_correct_scheduler() -> None:
    check_scheduler(_scheduler(PlainConfig), {})


@pytest.mark.parametrize(
    ("config_class", "probs", "message"),
    [
        (UndescribedConfig, None, "fields without a description: power"),
        (OpenConfig, None, "accepts an unknown key"),
        (PlainConfig, lambda step, n: [1.0] * n, "sums to 3"),
        (PlainConfig, lambda step, n: [1.0, -0.5, 0.5][:n] if n == 3 else [1.0], r">= 0|= \[1.0, -0.5, 0.5\]"),
        (PlainConfig, lambda step, n: [1.0 / n] * (n - 1) if n > 1 else [1.0], "has 2 values for 3 tasks"),
    ],
)
def test_contract_suites_catch_a_broken_scheduler(config_class: type, probs: Any, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_scheduler(_scheduler(config_class, probs), {})


class HalfMetric(Metric):
    """Always 0.5."""

    name = "half"
    config_class = PlainConfig

    def compute(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        return {"half": 0.5}


class TensorMetric(Metric):
    """Returns a tensor, which JSON cannot hold."""

    name = "tensor"
    config_class = PlainConfig

    def compute(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        return {"tensor": torch.tensor(float(list(predictions) == list(references)))}  # type: ignore[dict-item]


def test_contract_suites_catch_broken_metrics() -> None:
    with pytest.raises(AssertionError, match="not the maximum 1.0"):
        check_metric(HalfMetric, {})
    with pytest.raises(AssertionError, match="not a Python float"):
        check_metric(TensorMetric, {})


class ListDataset(DatasetSource):
    """A Dataset, not a DatasetDict."""

    name = "listed"
    config_class = DatasetConfig

    def load(self) -> Any:
        return datasets.Dataset.from_dict({"text": ["a"], "label": [0]})


def test_contract_suites_catch_a_dataset_without_a_dataset_dict() -> None:
    with pytest.raises(AssertionError, match="not datasets.DatasetDict"):
        check_dataset(ListDataset, {})


class GateConfig(ComponentConfig):
    """A gate."""

    detach: bool = Field(default=False, description="Cut the gradient (broken on purpose).")
    extra_column: bool = Field(default=False, description="Return K+1 weights (broken on purpose).")


class GateCombiner(Combiner):
    """Softmax gate over adapters from the embeddings."""

    name = "gate"
    config_class = GateConfig

    def __init__(self, config: GateConfig, *, setup: CombinerSetup) -> None:
        super().__init__(config, setup=setup)
        self.gate = nn.Linear(setup.hidden_size, self.num_adapters + int(config.extra_column))

    def representation_sources(self) -> set[str]:
        return {"embeddings"}

    def weights(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor | None:
        w = torch.softmax(self.gate(ctx.representation("embeddings")), dim=-1)
        return w.detach() if self.config.detach else w


def test_contract_suites_check_combiner_gradients_and_weight_shapes() -> None:
    check_combiner(GateCombiner, {})
    with pytest.raises(AssertionError, match="no gradient reaches the combiner's parameters"):
        check_combiner(GateCombiner, {"detach": True})
    with pytest.raises(AssertionError, match=r"weights\(\) returned shape \(4, 3\); expected \(B, K\)"):
        check_combiner(GateCombiner, {"extra_column": True})


class InputGateCombiner(GateCombiner):
    """The gate, claiming (rightly) that it reads the input alone."""

    name = "input_gate"
    task_independent = True


class TaskBiasedGateCombiner(InputGateCombiner):
    """The gate plus a bias by task id, claiming (wrongly) that it reads the input alone."""

    name = "task_biased_gate"

    def weights(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor | None:
        assert ctx.task_ids is not None
        logits = self.gate(ctx.representation("embeddings")) + 3.0 * nn.functional.one_hot(ctx.task_ids, self.num_adapters)
        return torch.softmax(logits, dim=-1)


def test_contract_suites_check_a_task_independent_claim() -> None:
    check_combiner(InputGateCombiner, {})
    with pytest.raises(AssertionError, match="claims task_independent, but the same inputs under task ids"):
        check_combiner(TaskBiasedGateCombiner, {})


def test_contract_suites_catch_a_head_whose_loss_is_not_a_scalar() -> None:
    cls = load_registry().component_class("head", "classification")

    class UnreducedHead(cls):  # type: ignore[misc, valid-type]
        def forward(self, output: BackboneOutput, batch: Mapping[str, Any]) -> HeadOutput:
            out = super().forward(output, batch)
            return HeadOutput(loss=torch.nn.functional.cross_entropy(out.logits, batch["labels"], reduction="none"), logits=out.logits)

    with pytest.raises(AssertionError, match="not a finite scalar"):
        check_head(UnreducedHead, {})


def test_contract_suites_catch_a_backbone_with_the_wrong_output_shape() -> None:
    cls = load_registry().component_class("backbone", "hf_encoder")

    class FirstTokenBackbone(cls):  # type: ignore[misc, valid-type]
        def forward(self, input_ids: Tensor, attention_mask: Tensor) -> BackboneOutput:
            return BackboneOutput(hidden=super().forward(input_ids, attention_mask).hidden[:, :1])

    params = {k: v for k, v in TINY_BERT.items() if k != "type"}
    with pytest.raises(AssertionError, match=r"expected \(B, T, hidden_size\)"):
        check_backbone(FirstTokenBackbone, params)


def _balancer(combine: Any, *, combines: str = "losses", init: Any = None) -> type:
    from mtkit import Balancer, BalancerConfig

    class DemoBalancerConfig(BalancerConfig):
        """No params of its own."""

    class DemoBalancer(Balancer):
        name = "demo"
        config_class = DemoBalancerConfig

        def __init__(self, config: Any, *, task_names: Sequence[str]) -> None:
            super().__init__(config, task_names=task_names)
            if init is not None:
                init(self)

    DemoBalancer.combines = combines  # type: ignore[assignment]
    setattr(DemoBalancer, "combine_gradients" if combines == "gradients" else "combine_losses", combine)
    return DemoBalancer


def _plain_sum(self: Any, losses: Any) -> Tensor:
    return torch.stack([v * losses.scales[t] for t, v in losses.losses.items()]).sum()


def _counting(self: Any, losses: Any) -> Tensor:
    self.calls += 1  # state outside the state dict: a resumed run would start counting again
    return _plain_sum(self, losses) / self.calls


def test_contract_suites_accept_a_correct_balancer() -> None:
    from mtkit.testing.balancer import check_balancer

    check_balancer(_balancer(_plain_sum), {})
    check_balancer(_balancer(lambda self, jacobian, tasks: jacobian.mean(0), combines="gradients"), {"diagnostics_every": 5})


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (_balancer(_counting, init=lambda self: setattr(self, "calls", 0)), "some state is not in state_dict()"),
        (_balancer(lambda self, losses: _plain_sum(self, losses) - 2 * losses.losses[next(iter(losses.losses))]), r"d\(loss\)/d\(loss of 'first'\) = -"),
        (_balancer(lambda self, losses: torch.stack(list(losses.losses.values()))), "did not return a scalar tensor"),
        (_balancer(lambda self, jacobian, tasks: jacobian.sum(1), combines="gradients"), r"returned shape torch.Size\(\[3\]\), not \(12,\)"),
        (_balancer(lambda self, jacobian, tasks: -jacobian.mean(0), combines="gradients"), "the update's cosine with them is -1.000, not ~1"),
        (type("Mislabelled", (_balancer(_plain_sum),), {"combines": "gradients"}), r"combines gradients but does not implement combine_gradients\(\)"),
    ],
    ids=["state_outside_state_dict", "a_task_pushed_backwards", "not_a_scalar", "wrong_shape", "against_agreeing_tasks", "wrong_method"],
)
def test_contract_suites_catch_broken_balancers(cls: type, message: str) -> None:
    from mtkit.testing.balancer import check_balancer

    with pytest.raises(AssertionError, match=message):
        check_balancer(cls, {})
