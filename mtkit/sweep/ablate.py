"""`mtkit ablate`: run variants of one recipe at several seeds and compare them.

The sweep directory holds one run directory per variant and seed (`<variant>/seed-<n>/`), shared
leading phases under `_shared/`, and the comparison (comparison.csv, runs.csv, comparison.md,
comparison.png, comparison_cost.png, provenance.json). Rerunning the same command skips finished runs,
resumes interrupted ones from their checkpoints and writes the comparison again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mtkit.api.errors import MtkitError
from mtkit.api.registry import Registry, load_registry
from mtkit.sweep.comparison import Comparison, compare
from mtkit.sweep.executors import Event, Execution, Executor, InProcessExecutor, SubprocessExecutor, run_specs
from mtkit.sweep.job import Outcome, is_finished
from mtkit.sweep.plan import JobSpec, Plan, make_plan
from mtkit.sweep.provenance import collect_provenance
from mtkit.sweep.resolve import resolve_jobs
from mtkit.sweep.variants import Variant, parse_seeds, parse_swap, parse_variant
from mtkit.sweep.write import write_comparison

__all__ = ["Comparison", "Execution", "Variant", "parse_seeds", "parse_swap", "parse_variant", "run_ablation"]


def _check_execution(execution: Execution) -> None:
    if execution.workers < 1:
        raise MtkitError(f"--workers {execution.workers}: give at least 1")
    if execution.threads is not None and execution.threads < 1:
        raise MtkitError(f"--threads {execution.threads}: give at least 1")
    if execution.ray and execution.workers > 1:
        raise MtkitError("--workers and --ray both say where runs execute; pass --ray-cpus to size Ray tasks instead of --workers")
    if execution.ray_cpus <= 0 or execution.ray_gpus < 0:
        raise MtkitError(f"--ray-cpus {execution.ray_cpus} and --ray-gpus {execution.ray_gpus}: CPUs must be > 0 and GPUs >= 0")


def _threads_per_run(execution: Execution, recipe: dict[str, Any]) -> int:
    """Each run's CPU threads: a Ray task's CPUs, or the threads to share divided among the workers."""
    if execution.ray:
        return max(1, int(execution.ray_cpus))
    total = execution.threads or recipe.get("run", {}).get("threads")
    if total is None:
        import torch

        total = torch.get_num_threads()
    return max(1, int(total) // execution.workers)


def _todo(plan: Plan) -> tuple[list[JobSpec], dict[str, Outcome]]:
    """The runs still to execute (a shared run only while a run that forks from it is), and those finished before."""
    finished = {s.key for s in plan.specs if is_finished(s)}
    needed: set[str] = set()
    for spec in reversed(plan.specs):  # forks come after their shared runs
        wanted = any(s.fork and s.fork.source == spec.key and s.key in needed for s in plan.specs) if spec.shared else True
        if wanted and spec.key not in finished:
            needed.add(spec.key)
    return [s for s in plan.specs if s.key in needed], {key: Outcome(key, "skipped", start="finished before") for key in finished}


def _executor(execution: Execution, root: Path, threads: int, callbacks: Callable[[str], Any] | None) -> Executor:
    if execution.ray:
        from mtkit.sweep.ray_tasks import RayExecutor

        return RayExecutor(execution)
    if execution.workers == 1:
        return InProcessExecutor(callbacks)
    return SubprocessExecutor(root, execution.workers, threads)


def run_ablation(
    recipe_path: str | Path,
    variants: Sequence[Variant],
    overrides: Sequence[str] = (),
    *,
    seeds: Sequence[int] | None = None,
    split_seeds: bool = False,
    reference: str | None = None,
    output_dir: str | Path | None = None,
    execution: Execution | None = None,
    share: bool = True,
    callbacks: Callable[[str], Any] | None = None,
    on_event: Event | None = None,
    registry: Registry | None = None,
) -> Comparison:
    """Run every variant at every seed, then write and return the comparison.

    Args:
        recipe_path: The recipe the variants change.
        variants: The variants, in the order the comparison shows them.
        overrides: `--set` overrides applied to every variant.
        seeds: Seeds to repeat each variant at; None runs each once at its recipe's seed.
        split_seeds: Also draw each task's held-out split with the run's seed.
        reference: The variant the others are paired against (default: the first).
        output_dir: The sweep directory (default `runs/<recipe name>-ablation`).
        execution: Where runs execute (default: one at a time in this process).
        share: Train leading phases that runs agree on once and fork the rest from their checkpoint.
        callbacks: Per run key, training callbacks for runs in this process (progress bars).
        on_event: Told when each run starts and ends.
        registry: Component registry (default: every installed plugin).

    Raises:
        MtkitError: Bad variants, seeds, reference or execution options, before anything trains.
    """
    registry = registry or load_registry()
    execution = execution or Execution()
    _check_execution(execution)
    names = [v.name for v in variants]
    jobs = resolve_jobs(recipe_path, variants, overrides, seeds, registry, split_seeds=split_seeds)
    reference = reference or names[0]
    if reference not in names:
        raise MtkitError(f"--reference {reference!r} is not a variant of this sweep (variants: {', '.join(names)})")
    root = Path(output_dir or Path("runs") / f"{jobs[0].recipe['run']['name']}-ablation").resolve()
    threads = _threads_per_run(execution, jobs[0].recipe)
    plan = make_plan(jobs, root, share=share, threads=threads)
    todo, done = _todo(plan)
    tic = time.perf_counter()
    outcomes = run_specs(todo, _executor(execution, root, threads, callbacks), done, on_event) if todo else done
    comparison = compare(root, plan, outcomes, names, reference, seeds)
    comparison.seconds = time.perf_counter() - tic
    comparison.provenance = collect_provenance()
    write_comparison(comparison)
    return comparison
