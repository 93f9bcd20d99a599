"""Configs of the built-in balancers (pydantic only, so listing never imports torch or TorchJD)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from mtkit import BalancerConfig


class StaticBalancerConfig(BalancerConfig):
    """Each task's loss times its `loss_weight` and its share of the batch's samples (the default)."""


class UncertaintyBalancerConfig(BalancerConfig):
    """Learned task weights from homoscedastic uncertainty (Kendall et al. 2018): exp(-s) L + s/2 per task."""

    initial_log_variance: float = Field(default=0.0, description="Each task's log-variance s at the start (0: weight 1).")
    lr_multiplier: float = Field(default=1.0, gt=0, description="The log-variances train at the phase's lr times this.")


class DwaBalancerConfig(BalancerConfig):
    """Dynamic weight averaging (Liu et al. 2019): tasks whose loss falls slowest get more weight."""

    temperature: float = Field(default=2.0, gt=0, description="Softmax temperature T over the loss ratios; larger is more even.")
    window: int = Field(
        default=20,
        gt=0,
        description="Steps whose losses are averaged into one measurement (the paper's epoch); the weights follow the "
        "ratio of each task's last two measurements, and are 1 until two exist.",
    )


class GradnormBalancerConfig(BalancerConfig):
    """GradNorm (Chen et al. 2018): learned task weights that equalise the tasks' gradient norms on the shared parameters."""

    needs_mixed_batches: ClassVar[bool] = True

    alpha: float = Field(
        default=1.5, ge=0, description="Restoring force: how strongly tasks that train slower get larger gradients (0: equal norms)."
    )
    lr_multiplier: float = Field(default=1.0, gt=0, description="The task weights train at the phase's lr times this.")


class _GradientConfig(BalancerConfig):
    needs_mixed_batches: ClassVar[bool] = True


class PcgradBalancerConfig(_GradientConfig):
    """PCGrad (Yu et al. 2020, TorchJD): each task's gradient projected off the others it conflicts with, then summed."""


class CagradBalancerConfig(_GradientConfig):
    """CAGrad (Liu et al. 2021, TorchJD): the update near the mean gradient that most improves the worst task."""

    radius: float = Field(
        default=0.5, ge=0, description="How far the update may leave the mean gradient, relative to its norm (the paper's c)."
    )


class ImtlGBalancerConfig(_GradientConfig):
    """IMTL-G (Liu et al. 2021, TorchJD): the update whose projections on every task's gradient direction are equal."""


class NashMtlBalancerConfig(_GradientConfig):
    """Nash-MTL (Navon et al. 2022, TorchJD): task weights from a bargaining game over the tasks' gradients."""

    max_norm: float = Field(default=1.0, ge=0, description="Largest norm of the update (0: no limit).")
    solver_iterations: int = Field(default=20, gt=0, description="Iterations of the weight solver per step.")


class AlignedMtlBalancerConfig(_GradientConfig):
    """Aligned-MTL (Senushkin et al. 2023, TorchJD): the tasks' gradients made orthogonal and of equal size, then combined."""

    scale_mode: Literal["min", "median", "rmse"] = Field(
        default="min", description="Which singular value of the tasks' gradients sets the size of the aligned ones."
    )


class UpgradBalancerConfig(_GradientConfig):
    """UPGrad (Quinton and Rey 2024, TorchJD): each task's gradient projected onto the cone where no task's loss rises, averaged."""


class MgdaBalancerConfig(_GradientConfig):
    """MGDA (Sener and Koltun 2018, TorchJD): the smallest convex combination of the tasks' gradients."""

    tolerance: float = Field(default=0.001, gt=0, description="The Frank-Wolfe solver stops when a step changes the weights by less than this.")
    max_iterations: int = Field(default=100, gt=0, description="Most Frank-Wolfe iterations per step.")
