"""Contract checks for balancers: one loss (or one update direction) from the tasks', every task pulling its own way,
and state that survives a checkpoint."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mtkit.testing._common import check_config

__all__ = ["check_balancer"]


def _losses(generator: Any, tasks: Sequence[str], needs_norms: bool) -> Any:
    import torch

    from mtkit.api.interfaces import TaskLosses

    values = {t: (torch.rand((), generator=generator) * 2 + 0.1).requires_grad_() for t in tasks}
    shares = torch.rand(len(tasks), generator=generator) + 0.2
    scales = {t: float(s) for t, s in zip(tasks, shares / shares.sum(), strict=True)}
    norms = {t: torch.rand((), generator=generator) + 0.05 for t in tasks} if needs_norms else None
    return TaskLosses(values, scales, dict.fromkeys(tasks, 1.0), norms)


def _jacobian(generator: Any, tasks: Sequence[str], size: int = 12) -> Any:
    import torch

    return torch.randn(len(tasks), size, generator=generator)


def _run(balancer: Any, tasks: Sequence[str], seed: int) -> Any:
    """One step's output for the inputs drawn from `seed` (torch's generator seeded alike before it)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if balancer.combines == "gradients":
        return balancer.combine_gradients(_jacobian(generator, tasks), list(tasks))
    return balancer.combine_losses(_losses(generator, tasks, balancer.needs_gradient_norms))


def _check_logs(balancer: Any) -> None:
    logs = balancer.logs()
    assert isinstance(logs, dict), f"logs() returned {type(logs).__name__}, not a dict"
    for key, value in logs.items():
        assert isinstance(key, str) and isinstance(value, float | int) and math.isfinite(value), f"logs()[{key!r}] = {value!r}"


def _check_losses(balancer: Any, tasks: Sequence[str], generator: Any) -> None:
    import torch

    losses = _losses(generator, tasks, balancer.needs_gradient_norms)
    combined = balancer.combine_losses(losses)
    where = f"combine_losses for tasks {list(tasks)}"
    assert isinstance(combined, torch.Tensor) and combined.dim() == 0, f"{where} did not return a scalar tensor"
    assert bool(torch.isfinite(combined)), f"{where} = {combined}"
    own = [p for p in balancer.parameters() if p.requires_grad]
    grads = torch.autograd.grad(combined, [losses.losses[t] for t in tasks] + own, allow_unused=True)
    for task, grad in zip(tasks, grads, strict=False):
        # Every present task's loss must pull the update its own way: a larger loss, a larger combined loss.
        assert grad is not None and float(grad) > 0, f"{where}: d(loss)/d(loss of {task!r}) = {grad}, not > 0"
    for param, grad in zip(own, grads[len(tasks) :], strict=True):
        assert grad is None or bool(torch.isfinite(grad).all()), f"{where}: a non-finite gradient for a parameter of shape {tuple(param.shape)}"
    _check_logs(balancer)


def _check_gradients(balancer: Any, tasks: Sequence[str], generator: Any) -> None:
    import torch

    jacobian = _jacobian(generator, tasks)
    direction = balancer.combine_gradients(jacobian, list(tasks))
    where = f"combine_gradients for tasks {list(tasks)}"
    assert isinstance(direction, torch.Tensor) and direction.shape == (jacobian.shape[1],), (
        f"{where} returned shape {getattr(direction, 'shape', None)}, not ({jacobian.shape[1]},)"
    )
    assert bool(torch.isfinite(direction).all()), f"{where} = {direction}"
    # Tasks that agree (one gradient, repeated) leave nothing to resolve: the update follows that gradient.
    row = torch.randn(jacobian.shape[1], generator=generator)
    agreeing = balancer.combine_gradients(row.repeat(len(tasks), 1), list(tasks))
    cosine = float(agreeing @ row) / max(float(agreeing.norm() * row.norm()), 1e-12)
    assert cosine > 0.99, f"{where}: for identical task gradients the update's cosine with them is {cosine:.3f}, not ~1"
    _check_logs(balancer)


def check_balancer(cls: type, params: Mapping[str, Any], *, task_names: Sequence[str] = ("first", "second", "third")) -> None:
    """Check a balancer class with `params` for tasks `task_names` (at least two)."""
    import torch

    config = check_config(cls, "balancer", params)
    from mtkit.api.interfaces import Balancer

    combines = getattr(cls, "combines", None)
    assert combines in ("losses", "gradients"), f"{cls.__name__}.combines must be 'losses' or 'gradients', got {combines!r}"
    method = "combine_gradients" if combines == "gradients" else "combine_losses"
    assert getattr(cls, method) is not getattr(Balancer, method), f"{cls.__name__} combines {combines} but does not implement {method}()"
    assert len(task_names) >= 2, "check_balancer needs at least two task names"

    def make(seed: int) -> Any:
        torch.manual_seed(seed)
        return cls(config, task_names=list(task_names))

    balancer = make(0)
    assert tuple(balancer.task_names) == tuple(task_names), "the balancer must keep the task names it was built with"
    assert balancer.lr_scale > 0, f"lr_scale = {balancer.lr_scale}, not > 0"
    check: Callable[[Any, Sequence[str], Any], None] = _check_gradients if combines == "gradients" else _check_losses
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):  # several steps, so stateful balancers move on
        check(balancer, task_names, generator)
    check(balancer, task_names[:2], generator)  # a batch without some task
    if combines == "losses":
        check(balancer, task_names[:1], generator)  # a batch of one task
    # Its state is its state_dict (tensors only, as checkpoints hold it): a new instance loading it continues alike.
    for step in range(45):
        _run(balancer, task_names, 100 + step)
    state = balancer.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values()), "state_dict() must hold tensors only (checkpoints are safetensors)"
    restored = make(7)
    missing, unexpected = restored.load_state_dict({k: v.clone() for k, v in state.items()}, strict=True)
    assert not missing and not unexpected, (missing, unexpected)
    for seed in (2, 3):
        a, b = _run(balancer, task_names, seed), _run(restored, task_names, seed)
        assert torch.allclose(a.detach(), b.detach(), atol=1e-5, rtol=1e-4), (
            f"after load_state_dict a new instance gives {b} where the original gives {a}: some state is not in state_dict()"
        )
