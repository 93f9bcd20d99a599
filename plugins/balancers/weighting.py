"""Loss-weighting balancers: one weight per task, fixed (static) or changing with training (uncertainty, dwa, gradnorm).

Each multiplies a task's loss by its own weight on top of the task's `scales` entry (its `loss_weight` times its
share of the batch), so at weight 1 every one of them gives what `static` gives.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mtkit import Balancer, TaskLosses

from .config import DwaBalancerConfig, GradnormBalancerConfig, StaticBalancerConfig, UncertaintyBalancerConfig


def _weighted_sum(losses: TaskLosses, weights: dict[str, Tensor] | None = None) -> Tensor:
    terms = [value * losses.scales[task] for task, value in losses.losses.items()]
    if weights is not None:
        terms = [term * weights[task] for term, task in zip(terms, losses.losses, strict=True)]
    return torch.stack(terms).sum()


class StaticBalancer(Balancer):
    """Each task's loss times its `loss_weight` and its share of the batch's samples (the default)."""

    name = "static"
    config_class = StaticBalancerConfig
    multi_process = True  # stateless: every process weights its own batch alike

    def combine_losses(self, losses: TaskLosses) -> Tensor:
        return _weighted_sum(losses)


class UncertaintyBalancer(Balancer):
    """Learned task weights from homoscedastic uncertainty (Kendall et al. 2018): exp(-s) L + s/2 per task.

    s = log sigma^2 is a parameter per task, trained with the phase: a task whose loss stays high gets a larger
    variance and so a smaller weight exp(-s), and the s/2 term keeps the variances from growing without bound.
    """

    name = "uncertainty"
    config_class = UncertaintyBalancerConfig
    config: UncertaintyBalancerConfig

    def __init__(self, config: UncertaintyBalancerConfig, *, task_names: Sequence[str]) -> None:
        super().__init__(config, task_names=task_names)
        self.log_variance = nn.Parameter(torch.full((len(self.task_names),), float(config.initial_log_variance)))

    @property
    def lr_scale(self) -> float:
        return self.config.lr_multiplier

    def combine_losses(self, losses: TaskLosses) -> Tensor:
        terms = []
        for task, value in losses.losses.items():
            s = self.log_variance[self.task_names.index(task)]
            terms.append((torch.exp(-s) * value + 0.5 * s) * losses.scales[task])
        return torch.stack(terms).sum()

    def logs(self) -> dict[str, float]:
        weights = torch.exp(-self.log_variance.detach()).tolist()
        return {f"weight/{task}": w for task, w in zip(self.task_names, weights, strict=True)}


class DwaBalancer(Balancer):
    """Dynamic weight averaging (Liu et al. 2019): tasks whose loss falls slowest get more weight.

    Weight of task k: K softmax(r / T)_k with r_k the ratio of its last two loss measurements, each the mean of
    its losses over `window` steps (the paper measures per epoch; a phase here counts steps). A task without
    samples in a window keeps its earlier measurements.
    """

    name = "dwa"
    config_class = DwaBalancerConfig
    config: DwaBalancerConfig

    def __init__(self, config: DwaBalancerConfig, *, task_names: Sequence[str]) -> None:
        super().__init__(config, task_names=task_names)
        k = len(self.task_names)
        self.register_buffer("measurements", torch.full((2, k), float("nan")))  # (earlier, latest) window means
        self.register_buffer("window_sum", torch.zeros(k))
        self.register_buffer("window_count", torch.zeros(k))
        self.register_buffer("window_steps", torch.zeros((), dtype=torch.long))
        self._weights = torch.ones(k)

    def _current_weights(self) -> Tensor:
        if bool(torch.isnan(self.measurements).any()):
            return torch.ones(len(self.task_names))
        ratios = self.measurements[1] / self.measurements[0].clamp_min(1e-12)
        return len(self.task_names) * torch.softmax(ratios / self.config.temperature, dim=0)

    def combine_losses(self, losses: TaskLosses) -> Tensor:
        self._weights = self._current_weights()
        weights = {task: self._weights[self.task_names.index(task)].to(value) for task, value in losses.losses.items()}
        combined = _weighted_sum(losses, weights)
        self._observe(losses)
        return combined

    @torch.no_grad()
    def _observe(self, losses: TaskLosses) -> None:
        for task, value in losses.losses.items():
            i = self.task_names.index(task)
            self.window_sum[i] += value.detach().float().to(self.window_sum.device)
            self.window_count[i] += 1
        self.window_steps += 1
        if int(self.window_steps) < self.config.window:
            return
        seen = self.window_count > 0
        self.measurements[0, seen] = self.measurements[1, seen]
        self.measurements[1, seen] = self.window_sum[seen] / self.window_count[seen]
        self.window_sum.zero_()
        self.window_count.zero_()
        self.window_steps.zero_()

    def logs(self) -> dict[str, float]:
        return {f"weight/{task}": float(w) for task, w in zip(self.task_names, self._weights, strict=True)}


class GradnormBalancer(Balancer):
    """GradNorm (Chen et al. 2018): learned task weights that equalise the tasks' gradient norms on the shared parameters.

    The weights w (summing to K) multiply the task losses the model trains on; they themselves train on
    sum_k |w_k G_k - mean(w G) r_k^alpha|, G_k the norm of task k's gradient on the shared parameters and r_k its loss
    relative to its first one, over the mean of those. Needs each task's gradient norm every step (one extra backward
    pass per task).
    """

    name = "gradnorm"
    config_class = GradnormBalancerConfig
    config: GradnormBalancerConfig
    needs_gradient_norms = True

    def __init__(self, config: GradnormBalancerConfig, *, task_names: Sequence[str]) -> None:
        super().__init__(config, task_names=task_names)
        self.task_weights = nn.Parameter(torch.ones(len(self.task_names)))
        self.register_buffer("initial_losses", torch.full((len(self.task_names),), float("nan")))

    @property
    def lr_scale(self) -> float:
        return self.config.lr_multiplier

    def combine_losses(self, losses: TaskLosses) -> Tensor:
        assert losses.gradient_norms is not None, "the trainer gives gradient norms to a balancer that needs them"
        with torch.no_grad():  # the paper renormalises after each update; before each use is the same
            self.task_weights.clamp_(min=1e-4)
            self.task_weights.mul_(len(self.task_names) / self.task_weights.sum())
        tasks = list(losses.losses)
        index = torch.tensor([self.task_names.index(t) for t in tasks], device=self.task_weights.device)
        w = self.task_weights[index]
        values = torch.stack([losses.losses[t].detach().float() for t in tasks]).to(w.device)
        with torch.no_grad():
            fresh = torch.isnan(self.initial_losses[index])
            self.initial_losses[index[fresh]] = values[fresh]
        model_loss = _weighted_sum(losses, {t: w[i].detach() for i, t in enumerate(tasks)})
        norms = w * torch.stack([losses.gradient_norms[t].float() for t in tasks]).to(w.device)  # G_k, differentiable in w
        relative = values / self.initial_losses[index].clamp_min(1e-12)
        targets = (norms.mean() * (relative / relative.mean()) ** self.config.alpha).detach()
        return model_loss + (norms - targets).abs().sum()

    def logs(self) -> dict[str, float]:
        return {f"weight/{task}": float(w) for task, w in zip(self.task_names, self.task_weights.detach(), strict=True)}
