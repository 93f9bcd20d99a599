"""Run a recipe end to end: validate, build, train, evaluate and write its run directory."""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from mtkit.api.errors import MtkitError
from mtkit.api.registry import Registry, load_registry
from mtkit.data.tasks import cut_warnings
from mtkit.recipe.resolve import load_recipe
from mtkit.recipe.schema import Recipe
from mtkit.rundir.checkpoint import save_tensors
from mtkit.rundir.layout import RunDir
from mtkit.rundir.lock import hold_run_dir
from mtkit.rundir.manifest import write_manifest

__all__ = ["run_recipe"]


def _accelerator(recipe: Recipe, source: str) -> Any:
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    if recipe.run.device == "cuda" and not torch.cuda.is_available():
        raise MtkitError(
            f"{source}: run.device: 'cuda', but torch {torch.__version__} sees no CUDA device here; use device = \"auto\" "
            "(a GPU where there is one) or \"cpu\""
        )
    if recipe.run.threads:
        torch.set_num_threads(recipe.run.threads)
    # A batch reaches only its tasks' heads (and routing may skip adapters): DDP must allow unused parameters.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    # `auto` on a machine without CUDA is the CPU: said explicitly, Accelerate also runs several CPU processes (torchrun) as one job.
    cpu = recipe.run.device == "cpu" or (recipe.run.device == "auto" and not torch.cuda.is_available())
    return Accelerator(cpu=cpu, mixed_precision=recipe.run.mixed_precision, kwargs_handlers=[ddp])


def run_recipe(
    path: str | Path,
    overrides: Sequence[str] = (),
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Any = None,
    registry: Registry | None = None,
) -> RunDir:
    """Validate, build, train and evaluate a recipe; return its finished run directory."""
    registry = registry or load_registry()
    resolved = load_recipe(path, overrides, registry)
    recipe, raw = resolved.recipe, resolved.raw
    out = Path(recipe.run.output_dir or os.path.join("runs", recipe.run.name))
    if resume and (out / "recipe.json").is_file():
        saved = RunDir(out).read_json("recipe.json")
        if saved != raw:
            raise MtkitError(f"{out}: --resume with a recipe that differs from the one the run started with; resume with the same recipe and --set values")
    from mtkit.model.build import build_run, in_recipe
    from mtkit.train.trainer import Trainer

    accelerator = _accelerator(recipe, str(path))
    main = accelerator.is_main_process  # under `accelerate launch`, only the main process writes (and locks)
    if main:
        with in_recipe(str(path), None):
            RunDir.make_directory(out)
    with hold_run_dir(out) if main else nullcontext():
        if main:
            with in_recipe(str(path), None):
                run_dir = RunDir.create(out, resume=resume, overwrite=overwrite)
            if run_dir.restarted:
                _notice(callbacks, f"{out}: no checkpoint to resume from ({run_dir.restarted}); starting from step 0")
            run_dir.write_json("recipe.json", raw)
        accelerator.wait_for_everyone()
        run_dir = RunDir(out)
        resume = resume and run_dir.has_checkpoint
        built = build_run(resolved)
        trainer = Trainer(built, run_dir, accelerator, callbacks)
        if main:
            for name, data in built.tasks.items():
                for warning in cut_warnings(name, data.split, recipe.tasks[name].max_length or recipe.run.max_length):
                    _notice(callbacks, warning)
            splits = {n: d.split for n, d in built.tasks.items()}
            few_shot = {"few_shot": trainer.few_shot} if trainer.few_shot else {}
            run_dir.write_json("data.json", {"seed": recipe.run.seed, "tasks": splits, "phases": trainer.phase_steps, **few_shot})
            run_dir.write_json("tasks.json", {n: {"labels": list(i.label_names) if i.label_names else None} for n, i in built.task_infos.items()})
        results = trainer.run(resume=resume)
        accelerator.wait_for_everyone()
        if not main:
            return run_dir
        save_tensors(run_dir.path / "model.safetensors", trainer.model_state())
        run_dir.write_json("results.json", results)
        from mtkit.rundir.intervals import FILE as INTERVALS_FILE
        from mtkit.rundir.intervals import describe

        run_dir.write_json(INTERVALS_FILE, {
            **describe(recipe.run.bootstrap_resamples, recipe.run.seed), "intervals": trainer.intervals, "differences": trainer.differences,
        })
        if trainer.probe_results:
            run_dir.write_json("probes.json", trainer.probe_results)
        total = sum(p.numel() for p in built.model.parameters())
        run_dir.write_json("parameters.json", {"trained": trainer.trained_parameter_count(), "total": total})
        if recipe.run.inference_cost:
            from mtkit.rundir.cost import FILE as COST_FILE
            from mtkit.rundir.cost import measure_inference

            scored = recipe.scored_tasks(recipe.phases[-1])  # the inputs the final scores are on
            cost = measure_inference(built.model, {n: built.tasks[n] for n in scored}, resolved.phases[-1].combiner.path)
            run_dir.write_json(COST_FILE, cost)
        extra = _after_run(run_dir, built, trainer)
        from mtkit.rundir.report import write_report

        write_report(run_dir, raw, results, extra)
        write_manifest(run_dir.path)  # last: a directory with a manifest holds a finished run
        return run_dir


def _notice(callbacks: Any, message: str) -> None:
    """Tell the user something about the run (the CLI's progress display prints it)."""
    notice = getattr(callbacks, "notice", None)
    if notice is not None:
        notice(message)


def _after_run(run_dir: RunDir, built: Any, trainer: Any) -> list[str]:
    """Routing analysis when the final evaluation logged routing weights."""
    if not any(e.routing is not None for e in trainer.final.values()):
        return []
    from mtkit.rundir.analysis import write_routing_analysis

    return write_routing_analysis(run_dir, built.model, trainer.final, trainer.probe_final)
