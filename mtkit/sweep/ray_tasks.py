"""`--ray`: each run of a sweep as a Ray task, on a local Ray instance or a cluster.

A task runs in a temporary directory on whichever node Ray picks, so nothing assumes the driver's disk
is shared: a forked run gets its shared run's checkpoint as data, and every task returns its run
directory's files as data, which the driver writes into the sweep directory. What comes back: every
file at the top of the run directory (recipe.json, data.json, tasks.json, metrics.jsonl, results.json,
parameters.json, routing.json, report.md, the plots, sweep.json, and model.safetensors, the trained
weights without the frozen backbone, up to MAX_WEIGHTS_BYTES); a shared run also returns its last
checkpoint, which its forks start from. What stays on the worker: tensorboard/ and the other
checkpoints, so a run interrupted mid-way restarts from its start (or its shared run) when the sweep
is rerun; finished runs are skipped as with local workers.
"""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import Future
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from mtkit.api.errors import MtkitError
from mtkit.rundir.checkpoint import load_latest, write_json_atomic
from mtkit.rundir.manifest import MANIFEST, write_manifest
from mtkit.sweep.executors import Execution, Executor
from mtkit.sweep.job import Outcome, execute
from mtkit.sweep.plan import JobSpec

__all__ = ["MAX_WEIGHTS_BYTES", "RayExecutor", "collect_files", "import_ray", "run_remote", "write_files"]

MAX_WEIGHTS_BYTES = 256 * 2**20
"""model.safetensors larger than this (a run that trains the whole backbone) is not returned."""


def import_ray() -> Any:
    """The ray module, or an MtkitError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise MtkitError("--ray runs each run as a Ray task, but ray is not installed; install it with: pip install 'mtkit[ray]'") from None
    return ray


def collect_files(run_dir: Path, *, checkpoint: bool) -> dict[str, bytes]:
    """The run directory's top-level files (weights up to MAX_WEIGHTS_BYTES), and its last checkpoint if `checkpoint`."""
    files = {
        p.name: p.read_bytes()
        for p in sorted(run_dir.iterdir())
        if p.is_file() and not p.name.endswith(".tmp") and (p.name != "model.safetensors" or p.stat().st_size <= MAX_WEIGHTS_BYTES)
    }
    found = load_latest(run_dir) if checkpoint else None
    if found is not None:
        folder = found[0]
        files["checkpoints/latest"] = (run_dir / "checkpoints" / "latest").read_bytes()
        files |= {f"checkpoints/{folder.name}/{p.name}": p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    return files


def write_files(run_dir: Path, files: dict[str, bytes]) -> None:
    """Replace `run_dir` with `files` (relative paths)."""
    shutil.rmtree(run_dir, ignore_errors=True)
    for name, data in files.items():
        target = run_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def run_remote(spec_data: dict[str, Any], fork_files: dict[str, bytes] | None) -> dict[str, Any]:
    """The Ray task: run one spec in a temporary directory; return its outcome with the run's files."""
    import datasets

    datasets.disable_progress_bars()
    spec = JobSpec.from_json(spec_data)
    with tempfile.TemporaryDirectory(prefix="mtkit-sweep-") as tmp:
        local = Path(tmp) / "run"
        fork = spec.fork
        if fork is not None:
            write_files(Path(tmp) / "source", fork_files or {})
            fork = replace(fork, source_dir=str(Path(tmp) / "source"))
        recipe = {**spec.recipe, "run": {**spec.recipe["run"], "output_dir": str(local)}}
        outcome = execute(replace(spec, run_dir=str(local), recipe=recipe, fork=fork))
        if local.is_dir():
            if (local / "recipe.json").is_file():  # the recipe as the driver's directory holds it (output_dir there)
                write_json_atomic(local / "recipe.json", spec.recipe)
                if (local / MANIFEST).is_file():  # a finished run: its manifest records the recipe it now holds
                    write_manifest(local)
            outcome.files = collect_files(local, checkpoint=spec.shared and outcome.status == "ok")
    return asdict(outcome)


class RayExecutor(Executor):
    """Submits each run as a Ray task with the given CPUs and GPUs; Ray queues them until resources free up."""

    def __init__(self, execution: Execution) -> None:
        ray = import_ray()
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:  # an address joins a cluster; none starts a local instance (or joins RAY_ADDRESS, as Ray does)
            ray.init(address=execution.ray_address, include_dashboard=False, log_to_driver=False)
        self.limit = 1 << 30  # Ray schedules by resources
        self.remote = ray.remote(run_remote).options(num_cpus=execution.ray_cpus, num_gpus=execution.ray_gpus, max_retries=0)

    def launch(self, spec: JobSpec) -> Future[Outcome]:
        fork_files = collect_files(Path(spec.fork.source_dir), checkpoint=True) if spec.fork else None
        future: Future[Outcome] = Future()

        def finished(done: Future[Any]) -> None:
            try:
                outcome = Outcome(**done.result())
                if outcome.files:
                    write_files(Path(spec.run_dir), outcome.files)
            except Exception as exc:  # noqa: BLE001  a task that died (worker crash, node lost) fails its run only
                message = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
                outcome = Outcome(spec.key, "error", error=f"the Ray task failed: {message}")
            future.set_result(outcome)

        self.remote.remote(spec.to_json(), fork_files).future().add_done_callback(finished)
        return future

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
