"""Where a sweep's runs execute: this process (one worker), worker subprocesses (`--workers N`) or Ray
tasks (`--ray`, in mtkit.sweep.ray_tasks), and the loop that starts each run once its shared run is done.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtkit.rundir.checkpoint import write_json_atomic
from mtkit.sweep.job import Outcome, execute
from mtkit.sweep.plan import JobSpec

__all__ = ["Execution", "Executor", "InProcessExecutor", "SubprocessExecutor", "gpu_for_slot", "run_specs", "worker_env"]

Event = Callable[[str, JobSpec, Outcome | None], None]
"""Told `start` when a run starts and `done` (with its outcome) when it ends."""


@dataclass(frozen=True)
class Execution:
    """How a sweep executes its runs.

    Attributes:
        workers: Runs at once on this machine; 1 runs them in this process, more in worker subprocesses.
        threads: CPU threads the workers share (default: the recipe's `run.threads`, else torch's default).
        ray: Run each run as a Ray task instead.
        ray_address: Ray cluster to join; None starts a local Ray instance (or uses one already started).
        ray_cpus: CPUs each Ray task reserves (also its torch threads).
        ray_gpus: GPUs each Ray task reserves.
    """

    workers: int = 1
    threads: int | None = None
    ray: bool = False
    ray_address: str | None = None
    ray_cpus: float = 1.0
    ray_gpus: float = 0.0


class Executor(ABC):
    """Starts runs and hands back their outcomes as futures."""

    limit: int = 1  # runs started at once

    @abstractmethod
    def launch(self, spec: JobSpec) -> Future[Outcome]: ...

    def close(self) -> None:
        """Release workers (called once, after the last run)."""


class InProcessExecutor(Executor):
    """One run at a time in this process: no start-up cost, and the run's progress bars show as `mtkit run`'s do."""

    def __init__(self, callbacks: Callable[[str], Any] | None = None) -> None:
        self.callbacks = callbacks

    def launch(self, spec: JobSpec) -> Future[Outcome]:
        future: Future[Outcome] = Future()
        future.set_result(execute(spec, self.callbacks(spec.key) if self.callbacks else None))
        return future


def visible_gpus() -> list[str]:
    """GPU ids the workers may use: CUDA_VISIBLE_DEVICES if set, else every device torch sees."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_for_slot(slot: int, gpus: Sequence[str]) -> str | None:
    """The GPU worker `slot` gets alone (round robin), or None to leave the devices as they are (zero or one GPU)."""
    return gpus[slot % len(gpus)] if len(gpus) > 1 else None


def worker_env(slot: int, threads: int, gpus: Sequence[str]) -> dict[str, str]:
    """A worker's environment: its share of CPU threads for every threading library, and its GPU."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    gpu = gpu_for_slot(slot, gpus)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


class SubprocessExecutor(Executor):
    """`workers` runs at once, each in a fresh `python -m mtkit.sweep.job` process with its share of threads.

    A fresh process per run isolates runs (a crash or an out-of-memory kill ends one run, not the sweep)
    and starts each run with clean global state (torch threads, caches). Logs go to `<root>/.sweep/logs/`.
    """

    def __init__(self, root: Path, workers: int, threads: int) -> None:
        self.limit = workers
        self.threads = threads
        self.gpus = visible_gpus()
        self.folder = root / ".sweep"
        (self.folder / "logs").mkdir(parents=True, exist_ok=True)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="mtkit-sweep")
        self.slots: queue.Queue[int] = queue.Queue()
        for slot in range(workers):
            self.slots.put(slot)

    def launch(self, spec: JobSpec) -> Future[Outcome]:
        return self.pool.submit(self._run, spec)

    def _run(self, spec: JobSpec) -> Outcome:
        slot = self.slots.get()
        try:
            name = spec.key.replace("/", ".")
            spec_file, outcome_file = self.folder / f"{name}.spec.json", self.folder / f"{name}.outcome.json"
            log_file = self.folder / "logs" / f"{name}.log"
            outcome_file.unlink(missing_ok=True)
            write_json_atomic(spec_file, spec.to_json())
            with log_file.open("w", encoding="utf-8") as log:
                code = subprocess.run(
                    [sys.executable, "-m", "mtkit.sweep.job", str(spec_file), str(outcome_file)],
                    env=worker_env(slot, self.threads, self.gpus),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    check=False,
                ).returncode
            if outcome_file.is_file():
                return Outcome(**json.loads(outcome_file.read_text(encoding="utf-8")))
            return Outcome(spec.key, "error", error=f"the worker process ended with exit code {code} before finishing the run (log: {log_file})")
        finally:
            self.slots.put(slot)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def run_specs(specs: Sequence[JobSpec], executor: Executor, done: dict[str, Outcome], on_event: Event | None = None) -> dict[str, Outcome]:
    """Run `specs` (shared runs before their forks), at most `executor.limit` at once; returns every outcome.

    Args:
        specs: The runs to execute, in plan order.
        executor: Where they run.
        done: Outcomes already known (runs finished by an earlier sweep); a fork's shared run may be among them.
        on_event: Told when each run starts and ends.
    """
    outcomes = dict(done)
    pending = list(specs)
    running: dict[Future[Outcome], JobSpec] = {}

    def finish(spec: JobSpec, outcome: Outcome) -> None:
        outcomes[spec.key] = outcome
        if on_event:
            on_event("done", spec, outcome)

    try:
        while pending or running:
            for spec in list(pending):
                if len(running) >= executor.limit:
                    break
                source = spec.fork.source if spec.fork else None
                if source is not None and source not in outcomes:
                    continue  # its shared run is still running
                pending.remove(spec)
                if source is not None and outcomes[source].status == "error":
                    finish(spec, Outcome(spec.key, "error", error=f"its shared phases failed ({source}): {outcomes[source].error}"))
                    continue
                if on_event:
                    on_event("start", spec, None)
                running[executor.launch(spec)] = spec
            if not running:
                assert not pending, f"runs wait for shared runs that are not planned: {[s.key for s in pending]}"
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                spec = running.pop(future)
                finish(spec, future.result())
    finally:
        executor.close()
    return outcomes
