"""The training loop: phases of optimiser steps over scheduled task batches, with evaluation.

Every step reseeds torch from (seed, phase, step), and batches come from a precomputed plan, so
a run resumed from a checkpoint continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator
from torch import Tensor

from mtkit.api.interfaces import Balancer
from mtkit.data.few_shot import draw_few_shot
from mtkit.data.tasks import BatchPlan, TaskData, micro_batches, plan_batches
from mtkit.data.views import sentence_end_ids, span_views
from mtkit.model.build import BuiltRun, build_head, build_scheduler
from mtkit.model.param_groups import select_parameters
from mtkit.recipe.resolve import ResolvedPhase
from mtkit.recipe.schema import PhaseSection
from mtkit.rundir.evaluate import TaskEvaluation, move
from mtkit.rundir.layout import RunDir
from mtkit.rundir.report import COMBINER_FIT
from mtkit.train import balancing
from mtkit.train.balancing import Balancing, task_loss
from mtkit.train.callbacks import Callbacks, SilentCallbacks
from mtkit.train.checkpointing import Checkpointing, Resumed
from mtkit.train.keep_best import MEAN, BestWeights, parameters_by_task
from mtkit.train.lr_schedule import lr_lambda
from mtkit.train.scoring import Scoring

__all__ = ["Callbacks", "Trainer", "lr_lambda", "task_loss"]


@dataclass
class _PhaseRun:
    """What one training phase works with, built at its start."""

    index: int
    phase: PhaseSection
    train_model: Any  # the model as Accelerate prepared it (DDP-wrapped in several processes)
    optimizer: Any
    schedule: Any
    plan: BatchPlan
    names: list[str]  # the tasks the phase draws from, in plan order
    params: list[Tensor]
    named: list[tuple[str, Tensor]]
    best: BestWeights | None
    balancing: Balancing
    first_global_step: int  # the global step before the phase's first step
    accumulation: int = 1  # micro-batches per optimiser step


def _seed(*parts: int) -> int:
    value = 0
    for part in parts:
        value = (value * 1_000_003 + part) % (2**31 - 1)
    return value


class Trainer(Scoring, Checkpointing):
    """Runs a built run's phases, writing logs, checkpoints and evaluations into the run directory."""

    def __init__(self, built: BuiltRun, run_dir: RunDir, accelerator: Accelerator, callbacks: Callbacks | None = None) -> None:
        self.built = built
        self.run_dir = run_dir
        self.accelerator = accelerator
        self.main = accelerator.is_main_process  # only the main process writes (accelerate launch)
        self.callbacks = (callbacks or SilentCallbacks()) if self.main else SilentCallbacks()
        self.model = built.model.to(accelerator.device)
        self.recipe = built.recipe
        self.few_shot: dict[str, dict[str, Any]] = {}  # phase -> task -> the few-shot draw (data.json)
        self.phase_data = [self._phase_data(phase) for phase in self.recipe.phases]
        self.phase_steps = self._resolve_steps()
        self.saved_keys = self._saved_keys()
        self.results: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
        self.intervals: dict[str, dict[str, dict[str, dict[str, list[float]]]]] = {}  # like results: [low, high] per score
        self.differences: dict[str, dict[str, dict[str, dict[str, dict[str, Any]]]]] = {}  # phase -> "a - b" -> task -> score
        self.trained: set[str] = set()
        self.final: dict[str, TaskEvaluation] = {}
        self.probe_results: dict[str, dict[str, dict[str, dict[str, float]]]] = {}  # routing -> task -> probe -> scores
        self.probe_final: dict[str, TaskEvaluation] = {}  # "task/probe" -> its evaluation under the last phase's routing
        self._sentence_ends = sentence_end_ids(self.model.backbone.tokenizer)  # for sentence views
        self._writer: Any = None
        self._resumed_best: dict[str, Any] | None = None  # the best-weights record of the checkpoint resumed from
        self.balancers = balancing.build_balancers(built.resolved, accelerator.device)

    def _phase_data(self, phase: PhaseSection) -> dict[str, TaskData]:
        """The data `phase` may read, by task: the tasks it draws from, a few_shot phase's held-out tasks cut to their
        draw; a few_shot phase's routine also reads the library tasks (an adapter's own tasks), never a held-out one whole."""
        tasks = self.built.tasks
        if phase.few_shot is None:
            return {name: tasks[name] for name in self.recipe.scored_tasks(phase)}
        seed = self.recipe.run.seed if phase.few_shot.seed is None else phase.few_shot.seed
        drawn, self.few_shot[phase.name] = draw_few_shot(tasks, self.recipe.phase_tasks(phase), phase.few_shot.examples, seed)
        library = {name: data for name, data in tasks.items() if not self.recipe.tasks[name].held_out}
        return {**library, **drawn}

    def _resolve_steps(self) -> dict[str, dict[str, Any]]:
        """Each phase's optimiser steps, set on the phase: its `steps`, or its `epochs` over the training examples of the
        tasks it draws from, divided by the effective batch (rounded up). Returns what data.json records."""
        run, processes = self.recipe.run, self.accelerator.num_processes
        record: dict[str, dict[str, Any]] = {}
        for phase, data in zip(self.recipe.phases, self.phase_data, strict=True):
            batch = (phase.batch_size or run.batch_size) * (phase.grad_accumulation or run.grad_accumulation) * processes
            if phase.epochs is not None:
                examples = sum(len(data[task].train) for task in self.recipe.phase_tasks(phase))
                phase.steps = math.ceil(phase.epochs * examples / batch)
            record[phase.name] = {"steps": phase.steps, "effective_batch": batch} | ({"epochs": phase.epochs} if phase.epochs else {})
        return record

    def _saved_keys(self) -> list[str]:
        """State-dict keys a checkpoint holds: all but the backbone, plus backbone weights any phase trains."""
        trained: set[int] = set()
        for phase in self.built.resolved.phases:
            for group in select_parameters(self.model, phase.train, frozen=self.recipe.freeze):
                trained |= {id(p) for p in group.params}
        names = {id(p): n for n, p in self.model.named_parameters()}
        backbone_trained = {names[i] for i in trained if names[i].startswith("backbone.")}
        return [k for k in self.model.state_dict() if not k.startswith("backbone.") or k in backbone_trained]

    def trained_parameter_count(self) -> int:
        """Parameters that received gradients in some phase."""
        return sum(p.numel() for n, p in self.model.named_parameters() if n in self.trained)

    @property
    def writer(self) -> Any:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir.path / "tensorboard"))
        return self._writer

    # --- the loop --------------------------------------------------------------------------

    def run(self, *, resume: bool = False) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
        resumed = self._restore() if resume else Resumed()
        start_phase, start_step, optimizer_files = resumed.phase, resumed.step, resumed.optimizer_files
        global_step = sum(p.steps for p in self.recipe.phases[:start_phase]) + start_step
        for index in range(start_phase, len(self.recipe.phases)):
            phase = self.recipe.phases[index]
            first = start_step if index == start_phase else 0
            global_step = self._run_phase(index, phase, first, global_step, optimizer_files if index == start_phase else None)
        self._final_evaluation()
        if self._writer is not None:
            self._writer.close()
        return self.results

    def _run_phase(self, index: int, phase: PhaseSection, first: int, global_step: int, optimizer_files: Any) -> int:
        resolved = self.built.resolved.phases[index]
        self.model.start_phase(resolved.combiner.path, resolved.task_adapters)
        trainable = select_parameters(self.model, resolved.train, frozen=self.recipe.freeze)
        if phase.fresh_heads and first == 0:  # resumed mid-phase, the checkpoint holds the heads trained so far
            self._fresh_heads(index, phase)
        if phase.fit_combiner and first == 0:  # resumed mid-phase, the checkpoint holds what the routine learned
            self._fit_combiner(resolved, global_step)
        if phase.steps > 0 and trainable:
            global_step = self._train_phase(index, phase, first, global_step, optimizer_files)
        if phase.evaluate:
            evaluations = self._evaluate(phase.name, phase.routing, global_step)
            if index == len(self.recipe.phases) - 1:
                self.final = evaluations
        self._checkpoint(global_step, None, index + 1, 0)
        return global_step

    def _fit_combiner(self, phase: ResolvedPhase, global_step: int) -> None:
        """The combiner's own training routine (`fit_combiner`), its summary logged and kept in combiner_fit.json."""
        from mtkit.train.fit import fit_combiner

        def log(record: dict[str, Any]) -> None:
            self._log({"event": "combiner_fit", "phase": phase.name, **record}, global_step)

        outcome = fit_combiner(
            self.model, self.phase_data[phase.index], phase, self.recipe.phase_tasks(phase.section),
            seed=_seed(self.recipe.run.seed, phase.index, 0, 2), device=self.accelerator.device,
            batch_size=phase.section.batch_size or self.recipe.run.batch_size, max_length=self.recipe.run.max_length, log=log,
        )
        if outcome.summary is None:
            log({"skipped": f"combiner {outcome.combiner!r} has no training routine"})
            return
        self.trained |= outcome.changed
        if self.main:
            path = self.run_dir.path / COMBINER_FIT
            fits: dict[str, Any] = self.run_dir.read_json(COMBINER_FIT) if path.is_file() else {}
            fits[phase.name] = {"combiner": outcome.combiner, **outcome.summary}
            self.run_dir.write_json(COMBINER_FIT, fits)
        log({"done": True})

    def _train_phase(self, index: int, phase: PhaseSection, first: int, global_step: int, optimizer_files: Any) -> int:
        run = self._start_phase(index, phase, first, optimizer_files)
        self.callbacks.phase_started(phase.name, phase.steps, first)
        if run.best is not None:
            if optimizer_files is not None and self._resumed_best is not None:
                run.best.load(optimizer_files, self._resumed_best)
            elif first == 0:
                self._validate(phase, 0, global_step, run.best)
        tic = time.perf_counter()
        for step in range(first, phase.steps):
            logs = self._step(run, step)
            global_step += 1
            tic = self._bookkeeping(run, step + 1, global_step, logs, tic)
        if run.best is not None and phase.keep_best:
            run.best.restore()
            self._log({"event": "keep_best", "phase": phase.name, "global_step": global_step, "kept": run.best.kept()}, global_step)
        return global_step

    def _start_phase(self, index: int, phase: PhaseSection, first: int, optimizer_files: Any) -> _PhaseRun:
        """The optimiser, learning-rate schedule, batch plan and best-weights keeper of a phase."""
        model, recipe, acc = self.model, self.recipe, self.accelerator
        model.requires_grad_(False)
        resolved = self.built.resolved.phases[index]
        groups = select_parameters(
            model, resolved.train, head_lr_multiplier=phase.head_lr_multiplier, layer_lr_decay=phase.layer_lr_decay, frozen=recipe.freeze
        )
        params = [p for g in groups for p in g.params]
        for p in params:
            p.requires_grad_(True)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        balancer = self.balancers[resolved.balancer.path]
        optimizer = torch.optim.AdamW(
            [{"params": g.params, "lr": phase.lr * g.lr_scale} for g in groups] + balancing.parameter_groups(balancer, phase.lr),
            lr=phase.lr,
            weight_decay=phase.weight_decay,
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(phase))
        if optimizer_files is not None:
            self._load_optimizer(optimizer, schedule, optimizer_files, first)
        train_model, optimizer = acc.prepare(model, optimizer)
        names = recipe.phase_tasks(phase)
        sizes = [len(self.phase_data[index][n].train) for n in names]
        scheduler = build_scheduler(self.built.resolved, resolved, sizes)
        accumulation = phase.grad_accumulation or recipe.run.grad_accumulation
        plan = plan_batches(
            scheduler,
            sizes,
            steps=phase.steps,
            batch_size=(phase.batch_size or recipe.run.batch_size) * accumulation,
            mixed=phase.batching == "mixed",
            seed=recipe.run.seed,
            phase=index,
            processes=acc.num_processes,
            process_index=acc.process_index,
        )
        model.train()
        best = None
        if phase.eval_every:
            per_task = phase.keep_best == "per_task"
            best = BestWeights(self._task_groups(index, named) if per_task else {MEAN: named}, phase.min_improvement)
        first_global_step = sum(p.steps for p in recipe.phases[:index])
        balanced = self._balancing(index, balancer, names, named, accumulation)
        return _PhaseRun(index, phase, train_model, optimizer, schedule, plan, names, params, named, best, balanced, first_global_step, accumulation)

    def _balancing(
        self, index: int, balancer: Balancer, names: Sequence[str], named: Sequence[tuple[str, Tensor]], accumulation: int
    ) -> Balancing:
        """The phase's balancing step; probes which trained parameters are shared when the balancer needs to know."""
        acc, path = self.accelerator, self.built.resolved.phases[index].balancer.path
        every = balancer.config.diagnostics_every
        where = f"{self.built.source}: {path}"
        balancing.check_setup(
            balancer, every, processes=acc.num_processes, scaled=acc.scaler is not None, accumulation=accumulation, where=where
        )
        split = None
        if balancing.needs_task_gradients(balancer, every):
            split = balancing.split_parameters(named, balancing.parameter_owners(named, self._probe_losses(index, names)))
        weights = {task: section.loss_weight for task, section in self.recipe.tasks.items()}
        return Balancing(balancer, weights, split, acc.backward, diagnostics_every=every, always_backward=acc.num_processes > 1)

    def _step(self, run: _PhaseRun, step: int) -> dict[str, float]:
        """One optimiser step of a phase (over its micro-batches when it accumulates gradients); returns its log values."""
        model, recipe, acc, phase = self.model, self.recipe, self.accelerator, run.phase
        torch.manual_seed(_seed(recipe.run.seed, run.index, step))
        schedule = self.built.resolved.phases[run.index].temperature
        temperature = schedule.at(step, phase.steps) if schedule is not None else None
        if temperature is not None:
            model.running_combiner.set_temperature(temperature)  # validation checked that it reads one
        views = torch.Generator().manual_seed(_seed(recipe.run.seed, run.index, step, 1)) if phase.views else None
        parts = micro_batches(run.plan.steps[step], run.accumulation)
        sums: dict[str, float] = {}
        for i, pieces in enumerate(parts):
            # Gradients of all but the last micro-batch stay local (several processes sync once per step).
            sync = nullcontext() if i == len(parts) - 1 or acc.num_processes == 1 else acc.no_sync(run.train_model)
            with sync:
                for key, value in self._micro_step(run, step, self._batches(run, pieces, views), len(parts)).items():
                    sums[key] = sums.get(key, 0.0) + value / len(parts)
        self._note_trained(run.named)
        grad_norm = acc.clip_grad_norm_(run.params, phase.max_grad_norm) if phase.max_grad_norm else None
        if grad_norm is not None and not torch.isfinite(grad_norm):
            raise self._diverged(run.index, run.phase, step, "the gradient norm is not finite")
        run.optimizer.step()
        run.schedule.step()
        run.optimizer.zero_grad(set_to_none=True)
        logs = {"loss": sums.pop("loss"), "lr": phase.lr * lr_lambda(phase)(step), **sums}
        if grad_norm is not None:
            logs["grad_norm"] = float(grad_norm)
        if temperature is not None:
            logs["temperature"] = temperature
        return logs

    def _batches(self, run: _PhaseRun, pieces: Any, views: torch.Generator | None) -> list[tuple[str, dict[str, Any]]]:
        """The collated task batches of one (micro-)batch's pieces, as views where the phase asks for them."""
        model, tokenizer, device = self.model, self.model.backbone.tokenizer, self.accelerator.device
        batches = []
        for task_index, rows in pieces:
            task = run.names[task_index]
            features = self.phase_data[run.index][task].train[rows]
            if run.phase.views is not None and views is not None:
                features = span_views(features, run.phase.views, views, set(tokenizer.all_special_ids), self._sentence_ends)
            batches.append((task, move(model.heads[task].collate(features, tokenizer), device)))
        return batches

    def _micro_step(self, run: _PhaseRun, step: int, batches: list[tuple[str, dict[str, Any]]], parts: int) -> dict[str, float]:
        """Forward and backward of one micro-batch, its loss scaled by 1/parts; returns its log values."""
        model, acc, phase = self.model, self.accelerator, run.phase
        with acc.autocast():
            losses, _ = run.train_model(batches)
            aux = {k: v for k, v in model.aux_losses.items() if phase.aux_losses.get(k, 0.0) > 0}
            aux_total = sum((phase.aux_losses[k] * v for k, v in aux.items()), torch.zeros((), device=acc.device))
        # The balancer puts the micro-batch's share of the update into .grad. A batch whose loss reaches no parameter
        # the phase trains has nothing to update; skipped in one process only (in several, one that skipped would
        # leave the others waiting).
        outcome = run.balancing.step(
            losses, batches, aux_total, step, lambda total: self._check_finite(run, step, losses, total), scale=1.0 / parts
        )
        if outcome.diagnostics is not None:
            done = run.first_global_step + step + 1
            self._log({"event": "gradients", "phase": phase.name, "step": step + 1, "global_step": done, **outcome.diagnostics}, done)
        logs = dict(outcome.logs)
        logs.update({f"loss/{task}": float(value.detach()) for task, value in losses.items()})
        logs.update({f"aux/{k}": float(v.detach()) for k, v in aux.items()})
        return logs

    def _check_finite(self, run: _PhaseRun, step: int, losses: Mapping[str, Tensor], total: Tensor) -> None:
        if bool(torch.isfinite(total)):
            return
        bad = [task for task, value in losses.items() if not bool(torch.isfinite(value))]
        what = f"the loss of task {', '.join(map(repr, bad))}" if bad else "an auxiliary loss"
        raise self._diverged(run.index, run.phase, step, f"{what} is not finite")

    def _bookkeeping(self, run: _PhaseRun, done: int, global_step: int, logs: dict[str, float], tic: float) -> float:
        """Validation checks, progress, log lines and checkpoints after step `done`; returns the log timer."""
        phase, recipe = run.phase, self.recipe
        eval_every = phase.eval_every or phase.steps
        score = None
        if run.best is not None and (done % eval_every == 0 or done == phase.steps):
            started = time.perf_counter()
            score = self._validate(phase, done, global_step, run.best)
            tic += time.perf_counter() - started  # seconds_per_step counts training only
        self.callbacks.step_done(done, logs if score is None else {**logs, "validation": score})
        if done % recipe.run.log_every == 0 or done == phase.steps:
            logs["seconds_per_step"] = (time.perf_counter() - tic) / recipe.run.log_every
            tic = time.perf_counter()
            self._log({"event": "train", "phase": phase.name, "step": done, "global_step": global_step, **logs}, global_step)
        if recipe.run.checkpoint_every and done % recipe.run.checkpoint_every == 0 and done < phase.steps:
            self._checkpoint(global_step, run.optimizer, run.index, done, run.best)
        return tic

    def _fresh_heads(self, index: int, phase: PhaseSection) -> None:
        """Re-initialise the heads `phase` trains, each as its head component builds it, from (run seed, phase, head)."""
        built = self.built
        for task in self.recipe.trained_heads(phase):
            new = build_head(built.resolved, task, self.model.backbone, built.task_infos[task], seed_path=f"phases.{index}.fresh_heads.{task}")
            self.model.heads[task].load_state_dict(new.state_dict())

    def _probe_losses(self, index: int, tasks: Sequence[str]) -> dict[str, Callable[[], Tensor]]:
        """For each task, its loss on two of the training examples phase `index` may read (which parameters it reaches)."""
        model, tokenizer = self.model, self.model.backbone.tokenizer

        def loss(task: str) -> Callable[[], Tensor]:
            features = self.phase_data[index][task].train[:2]
            batch = move(model.heads[task].collate(features, tokenizer), self.accelerator.device)
            return lambda: sum(model([(task, batch)])[0].values())

        return {task: loss(task) for task in tasks}

    def _task_groups(self, index: int, named: Sequence[tuple[str, Tensor]]) -> dict[str, list[tuple[str, Tensor]]]:
        """The trained parameters each task's loss alone reaches (probed on two of its training examples)."""
        # Under oracle routing a task's loss reaches its own adapter only (the others are not computed).
        tasks = self.recipe.phase_tasks(self.recipe.phases[index])
        return parameters_by_task(named, self._probe_losses(index, tasks), f"{self.built.source}: phases.{index}.keep_best")

    def _note_trained(self, named: Sequence[tuple[str, Tensor]]) -> None:
        """Record parameters whose gradient is non-zero: those the loss really reaches (an adapter
        that routing never picks gets zero gradients, and is not counted as trained)."""
        pending = [(n, p.grad) for n, p in named if n not in self.trained and p.grad is not None]
        if pending:
            nonzero = torch.stack([g.detach().abs().amax().float() for _, g in pending]) > 0
            self.trained |= {n for (n, _), hit in zip(pending, nonzero.tolist(), strict=True) if hit}

    def _log(self, record: dict[str, Any], global_step: int) -> None:
        if not self.main:
            return
        self.run_dir.log(record)
        for key, value in record.items():
            if isinstance(value, int | float) and key not in {"step", "global_step"}:
                self.writer.add_scalar(f"{record.get('phase', 'eval')}/{key}", value, global_step)

