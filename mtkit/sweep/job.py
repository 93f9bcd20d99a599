"""One run of a sweep, in this process: skip it when finished, resume it when interrupted, fork it from
its shared run, or start it; record how it went in the run directory's `sweep.json`.

`python -m mtkit.sweep.job SPEC.json OUTCOME.json` does the same in a worker process.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mtkit.api.errors import MtkitError
from mtkit.rundir.checkpoint import load_latest, load_tensors, save_checkpoint, write_json_atomic
from mtkit.sweep.plan import Fork, JobSpec
from mtkit.train.balancing import FILE as BALANCERS

__all__ = ["RECORD", "Outcome", "execute", "is_finished", "prepare_fork", "same_recipe"]

RECORD = "sweep.json"
"""The sweep's record of a run: status, seconds, how it started (fresh, resumed, forked), the error if any."""


@dataclass
class Outcome:
    """How a run of the sweep went.

    Attributes:
        key: The run's spec key.
        status: `ok`, `skipped` (finished by an earlier sweep) or `error`.
        seconds: Wall-clock seconds of this attempt (0 when skipped).
        start: `fresh`, `resumed` (from its own checkpoint) or `forked` (from a shared run's).
        error: One line saying what went wrong.
        files: Run-directory files returned by a Ray task, by relative path (written on the driver).
    """

    key: str
    status: str
    seconds: float = 0.0
    start: str = ""
    error: str | None = None
    files: dict[str, bytes] = field(default_factory=dict, repr=False)


def same_recipe(saved: Mapping[str, Any], recipe: Mapping[str, Any]) -> bool:
    """Equal but for `run.threads` (how many CPU threads a run had is not part of the experiment)."""

    def strip(r: Mapping[str, Any]) -> dict[str, Any]:
        return {**r, "run": {k: v for k, v in (r.get("run") or {}).items() if k != "threads"}}

    return strip(saved) == strip(recipe)


def _saved_recipe(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "recipe.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def is_finished(spec: JobSpec) -> bool:
    """The run directory holds this spec's finished run (and, for a shared run, the checkpoint its forks start from)."""
    run_dir = Path(spec.run_dir)
    if not ((run_dir / "results.json").is_file() and (run_dir / "report.md").is_file()):
        return False  # report.md is the last file a run writes
    saved = _saved_recipe(run_dir)
    if saved is None or not same_recipe(saved, spec.recipe):
        return False
    return not spec.shared or load_latest(run_dir) is not None


def _closing_evaluation(source_recipe: Mapping[str, Any], boundary: int) -> Any:
    """Log records the shared run wrote after its last checkpoint: its end-of-run evaluation, which the
    forked run does not make at that step (a last phase without `evaluate`, or oracle after learned routing)."""
    from mtkit.recipe.schema import PhaseSection

    last = PhaseSection.model_validate(source_recipe["phases"][-1])

    def closing(record: Mapping[str, Any]) -> bool:
        if record.get("event") != "eval" or record.get("global_step") != boundary or record.get("phase") != last.name:
            return False
        return not last.evaluate or record.get("routing") != last.routing

    return closing


def prepare_fork(fork: Fork, run_dir: Path, recipe: Mapping[str, Any]) -> None:
    """Make `run_dir` a run of `recipe` stopped where `fork.source_dir`'s run ended: its checkpoint (less the
    `fork.drop` weights, which the forked run builds itself) and its logs up to there; `--resume` continues it.

    Raises:
        MtkitError: The shared run has no checkpoint at the end of phase `fork.phases - 1`.
    """
    source = Path(fork.source_dir)
    found = load_latest(source)
    if found is None or found[1].get("phase") != fork.phases or found[1].get("step") != 0:
        raise MtkitError(
            f"{source}: the shared run has no checkpoint at the end of its phase {fork.phases - 1}; "
            "delete that folder and rerun the sweep to train it again"
        )
    folder, state = found
    tensors = load_tensors(folder / "model.safetensors")
    kept = {k: v for k, v in tensors.items() if not k.startswith(fork.drop)} if fork.drop else tensors
    trained = [name for name in state.get("trained", []) if fork.drop and name.startswith(fork.drop)]
    assert not trained, f"the shared phases trained {trained[:3]}, which a fork would not take"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    # The balancers' state (learned task weights, loss histories) continues in the fork as the model's weights do.
    extra = {BALANCERS: load_tensors(folder / BALANCERS)} if (folder / BALANCERS).is_file() else {}
    save_checkpoint(run_dir, state["global_step"], kept, None, state, extra)
    closing = _closing_evaluation(json.loads((source / "recipe.json").read_text(encoding="utf-8")), state["global_step"])
    logs = source / "metrics.jsonl"
    lines = logs.read_text(encoding="utf-8").splitlines() if logs.is_file() else []
    kept_lines = [line for line in lines if line.strip() and not closing(json.loads(line))]
    (run_dir / "metrics.jsonl").write_text("".join(line + "\n" for line in kept_lines), encoding="utf-8")
    write_json_atomic(run_dir / "recipe.json", dict(recipe))


def _recipe_file(spec: JobSpec, recipe: Mapping[str, Any]) -> Path:
    """The job's recipe as a file beside the run directory (`mtkit run` reads recipes from files)."""
    run_dir = Path(spec.run_dir)
    path = run_dir.parent / f".{run_dir.name}.recipe.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, dict(recipe))
    return path


def execute(spec: JobSpec, callbacks: Any = None) -> Outcome:
    """Run `spec` to its end in this process; an error in the run is reported in the outcome, not raised."""
    from mtkit.train.run import run_recipe

    run_dir = Path(spec.run_dir)
    if is_finished(spec):
        return Outcome(spec.key, "skipped", start="finished before")
    tic = time.perf_counter()
    recipe = spec.recipe
    start = "fresh"
    try:
        saved = _saved_recipe(run_dir)
        resume = saved is not None and same_recipe(saved, recipe) and load_latest(run_dir) is not None
        if resume:
            assert saved is not None
            recipe = {**recipe, "run": {**recipe["run"], "threads": saved["run"].get("threads")}}  # as it started
            start = "resumed"
        elif spec.fork is not None:
            prepare_fork(spec.fork, run_dir, recipe)
            resume, start = True, "forked"
        run_recipe(_recipe_file(spec, recipe), resume=resume, overwrite=not resume, callbacks=callbacks)
        outcome = Outcome(spec.key, "ok", time.perf_counter() - tic, start)
        detail = None
    except Exception as exc:  # noqa: BLE001  any failure of one run is reported, and the sweep goes on
        message = str(exc) if isinstance(exc, MtkitError) else f"{type(exc).__name__}: {exc}"
        one_line = "; ".join(line.strip() for line in message.splitlines() if line.strip()) or type(exc).__name__
        outcome = Outcome(spec.key, "error", time.perf_counter() - tic, start, one_line)
        detail = traceback.format_exc()
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {k: v for k, v in asdict(outcome).items() if k != "files"}
    record |= {"fork": spec.fork.source if spec.fork else None, "shared_phases": spec.shared_phases if spec.fork else []}
    write_json_atomic(run_dir / RECORD, record | ({"traceback": detail} if detail else {}))
    return outcome


def _exit_with_parent() -> None:
    """End this worker if the sweep that started it dies (a killed sweep must not leave runs writing)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    """`python -m mtkit.sweep.job SPEC.json OUTCOME.json`: execute one spec, write its outcome."""
    spec_file, outcome_file = argv or sys.argv[1:]
    _exit_with_parent()
    import datasets

    datasets.disable_progress_bars()
    spec = JobSpec.from_json(json.loads(Path(spec_file).read_text(encoding="utf-8")))
    outcome = execute(spec)
    write_json_atomic(Path(outcome_file), {k: v for k, v in asdict(outcome).items() if k != "files"})


if __name__ == "__main__":
    main()
