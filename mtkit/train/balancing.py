"""How one training step's task losses become the update in the trained parameters' `.grad`: the phase's balancer,
the split of the trained parameters into shared and task-specific ones, and the tasks' gradient diagnostics.

Which parameters are shared is probed, not declared: at the start of a phase that needs to know, each task's loss on
two of its training examples is differentiated (under the phase's routing and task -> adapter mapping) and a trained
parameter that the losses of several tasks reach is shared, one that a single task's loss reaches is that task's.
The model's structure alone does not say it: one LoRA is a task's own under oracle routing but shared when two tasks
route to it (`tasks.X.adapter`) or under learned routing; a combiner may keep per-task parts; a third-party
component need not declare anything. The probe uses single-task batches because in a mixed batch every adapter
under oracle routing is in every task's graph (weighted zero on the other tasks' rows).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mtkit.api.errors import MtkitError
from mtkit.api.interfaces import Balancer, TaskLosses
from mtkit.model.build import build_component
from mtkit.recipe import defaults
from mtkit.recipe.resolve import ResolvedRecipe

__all__ = [
    "Balancing",
    "ParameterSplit",
    "StepOutcome",
    "build_balancers",
    "check_setup",
    "gradient_diagnostics",
    "load_balancer_state",
    "needs_task_gradients",
    "parameter_groups",
    "parameter_owners",
    "save_balancer_state",
    "split_parameters",
    "task_loss",
    "task_scales",
]

Named = Sequence[tuple[str, Tensor]]
FILE = "balancers.safetensors"


def task_scales(batches: Sequence[tuple[str, Mapping[str, Any]]], weights: Mapping[str, float]) -> dict[str, float]:
    """Each task's `loss_weight` times its share of the batch's samples; tasks of weight 0 are left out."""
    sizes = {task: int(batch["input_ids"].shape[0]) for task, batch in batches}
    total_size = sum(sizes.values())
    return {task: weights[task] * sizes[task] / total_size for task in sizes if weights[task] > 0}


def task_loss(losses: Mapping[str, Tensor], batches: Sequence[tuple[str, Mapping[str, Any]]], weights: Mapping[str, float]) -> Tensor:
    """The static step loss: each task's loss times its `loss_weight` and its share of the batch's samples.

    A task of weight 0 is left out (its head and own adapter receive no gradient at all).
    """
    scales = task_scales(batches, weights)
    terms = [losses[t] * scales[t] for t in losses if t in scales]
    if not terms:
        return next(iter(losses.values())).new_zeros(()) if losses else torch.zeros(())
    return torch.stack(terms).sum()


def parameter_owners(named: Named, losses: Mapping[str, Callable[[], Tensor]]) -> dict[str, list[str]]:
    """The tasks whose loss reaches each trained parameter (in the autograd graph), by parameter name."""
    owners: dict[str, list[str]] = {}
    for task, loss in losses.items():
        grads = torch.autograd.grad(loss(), [p for _, p in named], allow_unused=True)
        for (name, _), grad in zip(named, grads, strict=True):
            if grad is not None:
                owners.setdefault(name, []).append(task)
    return owners


@dataclass
class ParameterSplit:
    """Trained parameters that several tasks' losses reach (`shared`) and those one task's loss alone reaches (`own`)."""

    shared: list[tuple[str, Tensor]] = field(default_factory=list)
    own: dict[str, list[tuple[str, Tensor]]] = field(default_factory=dict)


def split_parameters(named: Named, owners: Mapping[str, Sequence[str]]) -> ParameterSplit:
    """Task-specific parameters (one task's loss reaches them, per `parameter_owners`) and shared ones: all others,
    including any the probe did not reach (routing that picked other adapters for the probed examples), so that a
    parameter is never wrongly given one task's gradient alone."""
    split = ParameterSplit()
    for name, param in named:
        tasks = owners.get(name, ())
        if len(tasks) == 1:
            split.own.setdefault(tasks[0], []).append((name, param))
        else:
            split.shared.append((name, param))
    return split


def gradient_diagnostics(rows: Mapping[str, Tensor]) -> dict[str, float]:
    """Each task's gradient norm on the shared parameters and the cosine between every two tasks' gradients."""
    tasks = list(rows)
    matrix = torch.stack([rows[t] for t in tasks]).double()
    norms = matrix.norm(dim=1)
    gram = matrix @ matrix.T
    values = {f"grad_norm/{t}": float(n) for t, n in zip(tasks, norms, strict=True)}
    for i, a in enumerate(tasks):
        for j in range(i + 1, len(tasks)):
            denominator = float(norms[i] * norms[j])
            values[f"grad_cos/{a},{tasks[j]}"] = float(gram[i, j]) / denominator if denominator > 0 else 0.0
    return values


@dataclass
class StepOutcome:
    """What a balanced step reports: log values, and the gradient diagnostics on steps that compute them."""

    logs: dict[str, float]
    diagnostics: dict[str, float] | None = None


class Balancing:
    """A phase's balancer applied step by step: puts each step's update into the trained parameters' `.grad`.

    Args:
        balancer: The phase's balancer.
        loss_weights: Every task's `loss_weight`.
        split: The phase's shared and task-specific parameters (None when nothing needs them: a loss-weighting
            balancer without gradient norms or diagnostics).
        backward: Differentiates one loss into `.grad` (the accelerator's backward).
        diagnostics_every: Compute the gradient diagnostics every this many steps (0: never).
        always_backward: Call `backward` even for a loss that reaches no trained parameter (several processes wait
            on each other in it).
    """

    def __init__(
        self,
        balancer: Balancer,
        loss_weights: Mapping[str, float],
        split: ParameterSplit | None,
        backward: Callable[[Tensor], None],
        *,
        diagnostics_every: int = 0,
        always_backward: bool = False,
    ) -> None:
        self.balancer = balancer
        self.loss_weights = dict(loss_weights)
        self.split = split
        self.backward_fn = backward
        self.diagnostics_every = diagnostics_every
        self.always_backward = always_backward

    def step(
        self,
        losses: Mapping[str, Tensor],
        batches: Sequence[tuple[str, Mapping[str, Any]]],
        aux: Tensor,
        step: int,
        check: Callable[[Tensor], None],
        *,
        scale: float = 1.0,
    ) -> StepOutcome:
        """Put step `step`'s update into `.grad`; `aux` is the weighted sum of the auxiliary losses, and `check`
        raises if the loss about to be differentiated is not finite. `scale` (1/micro-batches of a step that
        accumulates gradients) multiplies what a loss-combining balancer differentiates; `check_setup` refuses
        accumulation for balancers that differentiate task by task."""
        scales = task_scales(batches, self.loss_weights)
        active = {task: value for task, value in losses.items() if task in scales}
        with torch.no_grad():
            static = task_loss(losses, batches, self.loss_weights)
        outcome = StepOutcome({"loss": float(static)})
        diagnose = bool(self.diagnostics_every) and (step + 1) % self.diagnostics_every == 0
        if self.balancer.combines == "gradients":
            check(static + aux)
            rows = self._gradient_step(active, scales, aux)
        else:
            wants_rows = diagnose or self.balancer.needs_gradient_norms
            rows = self._shared_rows(active) if wants_rows else {}
            norms = {t: row.norm() for t, row in rows.items()} if self.balancer.needs_gradient_norms else None
            if norms is not None:
                norms = {t: norms.get(t, torch.zeros(())) for t in active}
            if active:
                total = self.balancer.combine_losses(TaskLosses(active, scales, self._weights(active), norms)) + aux
            else:
                total = static + aux
            check(total)
            if total.requires_grad or self.always_backward:
                self.backward_fn(total * scale if scale != 1.0 else total)
        if diagnose and len(rows) > 1:
            outcome.diagnostics = gradient_diagnostics(rows)
        outcome.logs.update({f"balancer/{key}": value for key, value in self.balancer.logs().items()})
        return outcome

    def _weights(self, active: Mapping[str, Tensor]) -> dict[str, float]:
        return {task: self.loss_weights[task] for task in active}

    def _shared_params(self) -> list[Tensor]:
        assert self.split is not None, "the phase probed its shared parameters"
        return [p for _, p in self.split.shared]

    def _shared_rows(self, active: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Each task's gradient (of loss_weight x its loss) on the shared parameters, flattened; the graph is kept
        for the step's own backward pass."""
        shared = self._shared_params()
        rows = {}
        for task, loss in active.items():
            if shared and loss.requires_grad:
                grads = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
                rows[task] = _flatten(grads, shared) * self.loss_weights[task]
        return rows

    def _gradient_step(self, active: Mapping[str, Tensor], scales: Mapping[str, float], aux: Tensor) -> dict[str, Tensor]:
        """Differentiate each task's loss on its own: the shared parameters get the balancer's combination of the
        tasks' gradients, each task's own parameters its gradient times its scale (as `static` would give them)."""
        assert self.split is not None, "the phase probed its shared parameters"
        shared = self._shared_params()
        tasks = [task for task, loss in active.items() if loss.requires_grad]
        rows: dict[str, Tensor] = {}
        reached = [False] * len(shared)
        for i, task in enumerate(tasks):
            own = [p for _, p in self.split.own.get(task, [])]
            keep = i < len(tasks) - 1 or aux.requires_grad
            grads = torch.autograd.grad(active[task], shared + own, retain_graph=keep, allow_unused=True)
            reached = [r or g is not None for r, g in zip(reached, grads[: len(shared)], strict=True)]
            if shared:
                rows[task] = _flatten(grads[: len(shared)], shared) * self.loss_weights[task]
            for param, grad in zip(own, grads[len(shared) :], strict=True):
                if grad is not None:
                    _accumulate(param, grad * scales[task])
        if rows and any(reached):
            names = list(rows)
            matrix = torch.stack([rows[t] for t in names])  # (K, P)
            direction = self.balancer.combine_gradients(matrix, names) if len(names) > 1 else matrix[0]
            offset = 0
            for param, hit in zip(shared, reached, strict=True):
                size = param.numel()
                if hit:
                    _accumulate(param, direction[offset : offset + size].view_as(param))
                offset += size
        if aux.requires_grad:
            torch.autograd.backward([aux])
        return rows


def needs_task_gradients(balancer: Balancer, diagnostics_every: int) -> bool:
    """Whether a phase with this balancer differentiates tasks one by one (and so must know its shared parameters)."""
    return balancer.combines == "gradients" or balancer.needs_gradient_norms or diagnostics_every > 0


def check_setup(
    balancer: Balancer, diagnostics_every: int, *, processes: int, scaled: bool, where: str, accumulation: int = 1
) -> None:
    """Refuse what the balancing step cannot do: per-task gradients or per-process state in several processes or
    over the micro-batches of gradient accumulation, per-task gradients with fp16 loss scaling."""
    per_task = needs_task_gradients(balancer, diagnostics_every)
    # Both refusals below have the same cause: per-task gradients, or state updated from each batch it sees.
    refused = per_task or not balancer.multi_process
    fix = "set diagnostics_every = 0 and " if diagnostics_every and balancer.combines == "losses" and not balancer.needs_gradient_norms else ""
    if accumulation > 1 and refused:
        what = (
            "needs each task's gradient of the whole step"
            if per_task
            else "updates state of its own from each batch it sees, so it would see micro-batches, not steps"
        )
        raise MtkitError(
            f"{where}: balancer {balancer.name!r} {what}, and this phase accumulates gradients over {accumulation} "
            f"micro-batches; set grad_accumulation = 1 (a larger batch_size where memory allows), or {fix}use a "
            f"balancer that works with accumulation ({defaults.BALANCER})"
        )
    if processes > 1 and refused:
        what = (
            "needs each task's gradient on the shared parameters, which mtkit computes outside DDP's gradient averaging"
            if per_task
            else "keeps state of its own that each process would update from its own batches, so the processes would drift apart"
        )
        raise MtkitError(
            f"{where}: balancer {balancer.name!r} {what}, and this run has {processes} processes; run it in one process "
            f"(without accelerate launch), or {fix}use a balancer that works in several ({defaults.BALANCER})"
        )
    if scaled and per_task:
        raise MtkitError(
            f"{where}: balancer {balancer.name!r} differentiates each task's loss on its own, which mtkit does without fp16 "
            "loss scaling; set run.mixed_precision = \"bf16\" or \"no\", or use a loss-weighting balancer with diagnostics_every = 0"
        )


def _flatten(grads: Sequence[Tensor | None], params: Sequence[Tensor]) -> Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float() for g, p in zip(grads, params, strict=True)])


def _accumulate(param: Tensor, grad: Tensor) -> None:
    grad = grad.to(param.dtype)
    if param.grad is None:
        param.grad = grad.clone()
    else:
        param.grad += grad


def build_balancers(resolved: ResolvedRecipe, device: torch.device | str = "cpu") -> dict[str, Balancer]:
    """The recipe's balancer and every phase's own, by key path (a phase without its own uses the recipe's, whose
    state then carries from phase to phase), each initialised from the run seed and its key path."""
    recipe = resolved.recipe
    nodes = {phase.balancer.path: phase.balancer for phase in resolved.phases}
    return {
        path: build_component(node, resolved.source, seed=recipe.run.seed, task_names=list(recipe.tasks)).to(device)
        for path, node in nodes.items()
    }


def parameter_groups(balancer: Balancer, lr: float) -> list[dict[str, Any]]:
    """The optimiser parameter group of a balancer's own parameters (none if it has none): they train with the
    phase at its learning rate times the balancer's `lr_scale`, without weight decay."""
    params = list(balancer.parameters())
    return [{"params": params, "lr": lr * balancer.lr_scale, "weight_decay": 0.0}] if params else []


def save_balancer_state(balancers: Mapping[str, Balancer]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Every balancer's state as tensors (by `<key path>/<state key>`) and a JSON record of their types and keys."""
    tensors: dict[str, Tensor] = {}
    record: dict[str, Any] = {}
    for path, balancer in balancers.items():
        state = balancer.state_dict()
        tensors |= {f"{path}/{key}": value for key, value in state.items()}
        record[path] = {"type": balancer.name, "keys": sorted(state)}
    return tensors, record


def load_balancer_state(balancers: Mapping[str, Balancer], tensors: Mapping[str, Tensor], record: Mapping[str, Any], where: str) -> None:
    """Restore what `save_balancer_state` saved into balancers built from the same recipe.

    A balancer the checkpoint does not hold keeps the state it was built with: the run that wrote the checkpoint
    had no such balancer (a sweep's shared run holds only its own phases, and a later phase's balancer starts fresh).
    """
    for path, balancer in balancers.items():
        saved = record.get(path)
        if saved is None:
            continue
        if saved["type"] != balancer.name:
            raise MtkitError(
                f"{where}: the checkpoint holds balancer {saved['type']!r} at {path!r}, not {balancer.name!r}; resume with the "
                "recipe the run started with"
            )
        prefix = f"{path}/"
        state = {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}
        device = next((t.device for t in balancer.state_dict().values()), torch.device("cpu"))
        balancer.load_state_dict({k: v.to(device) for k, v in state.items()}, strict=True)
