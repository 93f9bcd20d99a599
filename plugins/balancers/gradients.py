"""Gradient balancers: TorchJD's aggregators combine the tasks' gradients on the shared parameters into one update.

Every method here is a TorchJD `WeightedAggregator`: it finds one weight per task from the (K, P) matrix of the
tasks' gradients and returns their weighted sum; the weights it found are logged (`weight/<task>`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchjd.aggregation import IMTLG, MGDA, AlignedMTL, CAGrad, NashMTL, PCGrad, UPGrad

from mtkit import Balancer

from .config import (
    AlignedMtlBalancerConfig,
    CagradBalancerConfig,
    ImtlGBalancerConfig,
    MgdaBalancerConfig,
    NashMtlBalancerConfig,
    PcgradBalancerConfig,
    UpgradBalancerConfig,
)


def aggregate(aggregator: Any, jacobian: Tensor, tasks: Sequence[str]) -> tuple[Tensor, dict[str, float]]:
    """TorchJD's aggregation of `jacobian` (K, P), and the weight it gave each task of `tasks` (caught from its
    weighting, as `torchjd.autojac.jac_to_grad` catches them) as log values."""
    caught: list[Tensor] = []
    handle = aggregator.weighting.register_forward_hook(lambda _module, _inputs, output: caught.append(output.detach()))
    try:
        vector = aggregator(jacobian)
    finally:
        handle.remove()
    return vector, {f"weight/{task}": float(w) for task, w in zip(tasks, caught[-1].tolist(), strict=True)}


class _AggregatorBalancer(Balancer):
    """A balancer that hands the tasks' gradients to one TorchJD aggregator (`make_aggregator`) and logs its weights."""

    combines = "gradients"

    def __init__(self, config: Any, *, task_names: Sequence[str]) -> None:
        super().__init__(config, task_names=task_names)
        self.aggregator = self.make_aggregator(config)
        self._logs: dict[str, float] = {}

    def make_aggregator(self, config: Any) -> Any:
        """The TorchJD aggregator this balancer applies, built from its config."""
        raise NotImplementedError

    def combine_gradients(self, jacobian: Tensor, tasks: Sequence[str]) -> Tensor:
        vector, self._logs = aggregate(self.aggregator, jacobian, tasks)
        return vector

    def logs(self) -> dict[str, float]:
        return self._logs


class PcgradBalancer(_AggregatorBalancer):
    """PCGrad (Yu et al. 2020, TorchJD): each task's gradient projected off the others it conflicts with, then summed.

    The projection order is drawn at random each step (from torch's generator, which the trainer seeds per step).
    """

    name = "pcgrad"
    config_class = PcgradBalancerConfig

    def make_aggregator(self, config: PcgradBalancerConfig) -> Any:
        return PCGrad()


class CagradBalancer(_AggregatorBalancer):
    """CAGrad (Liu et al. 2021, TorchJD): the update near the mean gradient that most improves the worst task."""

    name = "cagrad"
    config_class = CagradBalancerConfig
    config: CagradBalancerConfig

    def make_aggregator(self, config: CagradBalancerConfig) -> Any:
        return CAGrad(c=config.radius)


class ImtlGBalancer(_AggregatorBalancer):
    """IMTL-G (Liu et al. 2021, TorchJD): the update whose projections on every task's gradient direction are equal."""

    name = "imtl_g"
    config_class = ImtlGBalancerConfig

    def make_aggregator(self, config: ImtlGBalancerConfig) -> Any:
        return IMTLG()


class NashMtlBalancer(Balancer):
    """Nash-MTL (Navon et al. 2022, TorchJD): task weights from a bargaining game over the tasks' gradients.

    The solver starts each step from the previous step's weights. That start is state: it is kept in the buffer
    `solver_start` so checkpoints carry it. TorchJD's Nash-MTL is built for a fixed number of tasks; a step whose
    batch lacks some task is solved for the tasks present, from a fresh start, and leaves the state alone.
    """

    name = "nash_mtl"
    config_class = NashMtlBalancerConfig
    config: NashMtlBalancerConfig
    combines = "gradients"

    def __init__(self, config: NashMtlBalancerConfig, *, task_names: Sequence[str]) -> None:
        super().__init__(config, task_names=task_names)
        self.aggregator = self._nash(len(self.task_names))
        self.register_buffer("solver_start", torch.ones(len(self.task_names)))
        self._logs: dict[str, float] = {}
        self.register_load_state_dict_post_hook(lambda module, _keys: module._restart())

    def _nash(self, tasks: int) -> NashMTL:
        return NashMTL(n_tasks=tasks, max_norm=self.config.max_norm, optim_niter=self.config.solver_iterations)

    def _restart(self) -> None:
        # A new aggregator sets its solver up on its first call, starting from the saved weights.
        self.aggregator = self._nash(len(self.task_names))
        self.aggregator.weighting.prvs_alpha = self.solver_start.cpu().numpy().astype("float32")

    def combine_gradients(self, jacobian: Tensor, tasks: Sequence[str]) -> Tensor:
        with warnings.catch_warnings():
            # TorchJD's solver problem is not DPP-compliant in cvxpy's sense, which cvxpy says at every solve.
            warnings.filterwarnings("ignore", message=".*not DPP.*")
            warnings.filterwarnings("ignore", message="divide by zero", category=RuntimeWarning)
            if tuple(tasks) != self.task_names:
                vector, self._logs = aggregate(self._nash(len(tasks)), jacobian, tasks)
                return vector
            vector, self._logs = aggregate(self.aggregator, jacobian, tasks)
        start = torch.as_tensor(self.aggregator.weighting.prvs_alpha, dtype=self.solver_start.dtype)
        self.solver_start.copy_(start.to(self.solver_start.device))
        return vector

    def logs(self) -> dict[str, float]:
        return self._logs


class AlignedMtlBalancer(_AggregatorBalancer):
    """Aligned-MTL (Senushkin et al. 2023, TorchJD): the tasks' gradients made orthogonal and of equal size, then combined."""

    name = "aligned_mtl"
    config_class = AlignedMtlBalancerConfig
    config: AlignedMtlBalancerConfig

    def make_aggregator(self, config: AlignedMtlBalancerConfig) -> Any:
        return AlignedMTL(scale_mode=config.scale_mode)


class UpgradBalancer(_AggregatorBalancer):
    """UPGrad (Quinton and Rey 2024, TorchJD): each task's gradient projected onto the cone where no task's loss rises, averaged."""

    name = "upgrad"
    config_class = UpgradBalancerConfig

    def make_aggregator(self, config: UpgradBalancerConfig) -> Any:
        return UPGrad()


class MgdaBalancer(_AggregatorBalancer):
    """MGDA (Sener and Koltun 2018, TorchJD): the smallest convex combination of the tasks' gradients."""

    name = "mgda"
    config_class = MgdaBalancerConfig
    config: MgdaBalancerConfig

    def make_aggregator(self, config: MgdaBalancerConfig) -> Any:
        return MGDA(epsilon=config.tolerance, max_iters=config.max_iterations)
