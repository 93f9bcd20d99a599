"""The trainer's scorings: validation during a phase, each phase's held-out evaluation, and the end of the run's
comparisons (oracle routing, the backbone alone) and probes, kept in the run's results and intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from accelerate import Accelerator

from mtkit.data.tasks import TaskData
from mtkit.model.build import BuiltRun
from mtkit.model.multitask import MultiTaskModel
from mtkit.recipe.resolve import evaluation_path, routing_path
from mtkit.recipe.schema import BASE_ROUTING, ORACLE_ROUTING, PhaseSection, Recipe
from mtkit.rundir.evaluate import TaskEvaluation, evaluate, evaluate_examples
from mtkit.rundir.intervals import paired_differences, task_seed
from mtkit.rundir.layout import RunDir
from mtkit.rundir.predictions import prediction_rows, write_predictions
from mtkit.train.callbacks import Callbacks
from mtkit.train.keep_best import MEAN, BestWeights, group_scores

__all__ = ["Scoring"]


class Scoring:
    """Scoring methods of the trainer (a base class of `Trainer`, which sets these attributes and defines `_log`)."""

    built: BuiltRun
    recipe: Recipe
    model: MultiTaskModel
    accelerator: Accelerator
    run_dir: RunDir
    main: bool
    callbacks: Callbacks
    results: dict[str, dict[str, dict[str, dict[str, float]]]]
    intervals: dict[str, dict[str, dict[str, dict[str, list[float]]]]]
    differences: dict[str, dict[str, dict[str, dict[str, dict[str, Any]]]]]
    final: dict[str, TaskEvaluation]
    probe_results: dict[str, dict[str, dict[str, dict[str, float]]]]
    probe_final: dict[str, TaskEvaluation]

    def _log(self, record: dict[str, Any], global_step: int) -> None:
        raise NotImplementedError

    def _validate(self, phase: PhaseSection, step: int, global_step: int, best: BestWeights) -> float:
        """Score every task's validation split; offer the weights to `best`; return the mean primary score."""
        evaluations = evaluate(
            self.model,
            self._scored(phase.name),
            self.built.metrics,
            combiner=routing_path(phase.routing),
            batch_size=self.recipe.run.eval_batch_size,
            device=self.accelerator.device,
            split="validation",
            **self._sharding,
        )
        scores = {task: e.scores for task, e in evaluations.items()}
        score = group_scores(MEAN, scores)[MEAN]
        improved = best.offer(step, group_scores(phase.keep_best or MEAN, scores))
        record = {"event": "validation", "phase": phase.name, "step": step, "global_step": global_step, "score": score}
        self._log({**record, "improved": improved, "scores": scores}, global_step)
        return score

    @property
    def _sharding(self) -> dict[str, Any]:
        """Evaluation options: each process predicts its share, and every process gets all predictions, each once."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return {}
        from accelerate.utils import gather_object

        return {"shard": (acc.process_index, acc.num_processes), "gather": gather_object}

    def _scored(self, phase: str) -> dict[str, TaskData]:
        """The tasks phase `phase` scores (with held-out tasks: the library's, or in a few_shot phase the held-out ones)."""
        section = next(p for p in self.recipe.phases if p.name == phase)
        return {name: self.built.tasks[name] for name in self.recipe.scored_tasks(section)}

    def _evaluate(self, phase: str, routing: str, global_step: int, *, comparison: bool = False) -> dict[str, TaskEvaluation]:
        """Score every task's held-out split under `routing`; a comparison's predictions go to predictions/<phase>/<routing>/."""
        run = self.recipe.run
        evaluations = evaluate(
            self.model, self._scored(phase), self.built.metrics, combiner=evaluation_path(routing), batch_size=run.eval_batch_size,
            device=self.accelerator.device, resamples=run.bootstrap_resamples, run_seed=run.seed, **self._sharding,
        )
        folder = self.run_dir.path / "predictions" / phase / (routing if comparison else "")
        for task, evaluation in evaluations.items():
            self._write_predictions(folder, task, task, self.built.tasks[task].eval, evaluation)
        scores = {task: e.scores for task, e in evaluations.items()}
        self.results.setdefault(phase, {})[routing] = scores
        self.intervals.setdefault(phase, {})[routing] = {task: e.intervals for task, e in evaluations.items()}
        for task, values in scores.items():
            self._log({"event": "eval", "phase": phase, "routing": routing, "task": task, "global_step": global_step, **values}, global_step)
        self.callbacks.evaluated(phase, routing, scores, self.intervals[phase][routing])
        return evaluations

    def _final_evaluation(self) -> None:
        """When the last phase runs the recipe's combiner, also score oracle routing so the two can be compared; on a
        generative backbone, also the backbone alone (`base`: no adapter, same prompts and metrics). Not after a few_shot
        phase: it scores held-out tasks, whose oracle routing is the backbone alone (the base model is a variant of the
        sweep there, scored once rather than in every run)."""
        last = self.built.resolved.phases[-1]
        total = sum(p.steps for p in self.recipe.phases)
        if not self.final:
            self.final = self._evaluate(last.name, last.label, total)
        has_adapters = bool(self.model.adapter_names) and last.section.few_shot is None
        done = self.results.get(last.name, {})
        compare = not last.routes_by_task and has_adapters
        compared = {last.label: self.final}
        if compare and ORACLE_ROUTING not in done:
            compared[ORACLE_ROUTING] = self._evaluate(last.name, ORACLE_ROUTING, total, comparison=True)
        if self.model.backbone.generative and has_adapters and BASE_ROUTING not in done:
            compared[BASE_ROUTING] = self._evaluate(last.name, BASE_ROUTING, total, comparison=True)
        self._compare(last.name, last.label, compared)
        self._evaluate_probes(last.name, last.label, total, compare)

    def _compare(self, phase: str, label: str, compared: dict[str, dict[str, TaskEvaluation]]) -> None:
        """Paired differences between the end of the run's scorings on the same examples, each with its bootstrap
        interval: every routing against `base`, and the recipe's own routing (`label`) against `oracle`."""
        pairs = [(r, BASE_ROUTING) for r in compared if r != BASE_ROUTING and BASE_ROUTING in compared]
        if label != ORACLE_ROUTING and ORACLE_ROUTING in compared:
            pairs.append((label, ORACLE_ROUTING))
        run = self.recipe.run
        for first, second in pairs:
            by_task = {
                task: paired_differences(
                    self.built.metrics[task], evaluation.predictions, compared[second][task].predictions, evaluation.references,
                    resamples=run.bootstrap_resamples, seed=task_seed(run.seed, task),
                )
                for task, evaluation in compared[first].items()
                if task in compared[second]
            }
            self.differences.setdefault(phase, {})[f"{first} - {second}"] = by_task

    def _write_predictions(self, folder: Path, name: str, task: str, examples: Any, evaluation: TaskEvaluation) -> None:
        """Input, prediction and reference of every scored example of `task`, as `folder/<name>.jsonl` (main process only)."""
        if self.main:
            labels = self.built.task_infos[task].label_names
            rows = prediction_rows(examples, evaluation, labels, self.model.adapter_names, self.model.backbone.tokenizer)
            write_predictions(folder, name, rows)

    def _evaluate_probes(self, phase: str, routing: str, global_step: int, compare: bool) -> None:
        """Score every task's probes under the last phase's routing (and oracle routing, to compare, with `compare`)."""
        modes = [routing, ORACLE_ROUTING] if compare else [routing]
        for mode in modes:
            for task, probes in self.built.probes.items():
                for name, examples in probes.items():
                    evaluation = evaluate_examples(
                        self.model, task, examples, self.built.metrics[task], combiner=routing_path(mode),
                        batch_size=self.recipe.run.eval_batch_size, device=self.accelerator.device, **self._sharding,
                    )
                    self.probe_results.setdefault(mode, {}).setdefault(task, {})[name] = evaluation.scores
                    self._log({"event": "probe", "phase": phase, "routing": mode, "task": task, "probe": name,
                               "global_step": global_step, **evaluation.scores}, global_step)
                    if mode == routing:
                        self.probe_final[f"{task}/{name}"] = evaluation
                        folder = self.run_dir.path / "predictions" / phase
                        self._write_predictions(folder, f"{task}.{name}", task, examples, evaluation)
            if mode in self.probe_results:
                self.callbacks.probes_evaluated(mode, self.probe_results[mode])
