"""The run directory: where a run's recipe, data splits, metrics, weights and report live."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mtkit.api.errors import MtkitError
from mtkit.rundir.checkpoint import write_json_atomic
from mtkit.rundir.lock import LOCK_FILE
from mtkit.rundir.manifest import MANIFEST

__all__ = ["RunDir"]


class RunDir:
    """Files of one run. Layout:

        recipe.json          resolved recipe (after overrides); `mtkit run` accepts it
        data.json            split sizes and seeds per task
        tasks.json           label names per task (for predict without the data)
        metrics.jsonl        training logs and evaluations, one JSON object per line
        results.json         final metrics per phase and task
        model.safetensors    trained weights (everything but the frozen backbone)
        checkpoints/         resumable checkpoints (safetensors + JSON)
        tensorboard/         TensorBoard event files
        report.md            short human-readable report
        manifest.json        sha256 of the files predict, eval and export read (written last)
        .lock                held by the run writing the directory (mtkit.rundir.lock)
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.restarted: str | None = None  # set by create() when --resume found no checkpoint: why (the run starts at step 0)

    @classmethod
    def create(cls, path: Path, *, resume: bool, overwrite: bool) -> RunDir:
        """Prepare `path` for a run (the caller holds its lock, see mtkit.rundir.lock).

        A directory with files needs `resume` or `overwrite`. Resuming a run that never reached its
        first checkpoint starts it again from step 0 (`restarted` then says why).
        """
        if path.exists() and not path.is_dir():
            raise MtkitError(f"{path}: run.output_dir is an existing file, not a directory; choose another run.output_dir")
        run_dir = cls(path)
        used = path.exists() and any(p.name != LOCK_FILE for p in path.iterdir())
        if used and not resume:
            if not overwrite:
                hint = " (it has no checkpoint, so --resume starts it from step 0)" if not run_dir.has_checkpoint else ""
                raise MtkitError(
                    f"{path}: run directory already exists; pass --resume to continue it{hint}, --overwrite to replace it, "
                    "or --set run.output_dir=<new dir>"
                )
            run_dir.clear()
        if resume and not run_dir.has_checkpoint:
            run_dir.clear()  # logs of an attempt killed before its first checkpoint: the run starts again
            run_dir.restarted = "the run stopped before its first one" if used else "the run directory is new"
        path.mkdir(parents=True, exist_ok=True)
        (path / MANIFEST).unlink(missing_ok=True)  # a directory with a manifest holds a finished run; this one is not, yet
        return run_dir

    @staticmethod
    def make_directory(path: Path) -> None:
        """Create `path` (and its parents) for a run; a path that cannot be a directory is an MtkitError."""
        if path.exists() and not path.is_dir():
            raise MtkitError(f"run.output_dir {str(path)!r} is an existing file, not a directory; choose another run.output_dir")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = "a parent folder is a file" if isinstance(exc, NotADirectoryError | FileExistsError) else exc.strerror
            raise MtkitError(
                f"run.output_dir {str(path)!r} cannot be created ({reason or type(exc).__name__}); choose a writable run.output_dir"
            ) from None

    @property
    def has_checkpoint(self) -> bool:
        return (self.path / "checkpoints" / "latest").is_file()

    def clear(self) -> None:
        """Remove everything in the directory but its lock file (held by this run)."""
        for child in self.path.iterdir() if self.path.is_dir() else []:
            if child.name == LOCK_FILE:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    @classmethod
    def open(cls, path: Path) -> RunDir:
        if path.is_file():
            raise MtkitError(f"{path}: is a file; pass the run directory that `mtkit run` wrote (the folder holding recipe.json)")
        if not path.is_dir():
            raise MtkitError(f"{path}: not a run directory (no such folder); pass the folder `mtkit run` wrote (run.output_dir, default runs/<name>)")
        if not (path / "recipe.json").is_file():
            raise MtkitError(f"{path}: not a run directory (no recipe.json); pass the folder `mtkit run` wrote")
        return cls(path)

    def write_json(self, name: str, data: Any) -> None:
        write_json_atomic(self.path / name, data)

    def read_json(self, name: str) -> Any:
        """A JSON file of the run; a missing, undecodable or cut file is an MtkitError naming it."""
        file = self.path / name
        if not file.is_file():
            raise MtkitError(f"{file}: missing; the run did not finish (try `mtkit run ... --resume`)")
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            detail = f"line {exc.lineno}, column {exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
            raise MtkitError(f"{file}: damaged, not valid JSON ({detail}); restore it from a copy, or run the recipe again") from None

    def task_labels(self, tasks: Sequence[str]) -> dict[str, tuple[str, ...] | None]:
        """Each task's label names from tasks.json, checked against the tasks of recipe.json."""
        file = self.path / "tasks.json"
        data = self.read_json("tasks.json")
        if not isinstance(data, dict):
            raise MtkitError(f"{file}: damaged: holds a JSON {type(data).__name__}, not an object of tasks")
        missing = [t for t in tasks if t not in data]
        extra = sorted(set(data) - set(tasks))
        if missing or extra:
            parts = ([f"has no entry for task(s) {', '.join(map(repr, missing))}"] if missing else []) + (
                [f"has task(s) {', '.join(map(repr, extra))} that recipe.json lacks"] if extra else []
            )
            raise MtkitError(f"{file}: does not match recipe.json: it {' and '.join(parts)}; the two files come from different runs")
        labels: dict[str, tuple[str, ...] | None] = {}
        for task in tasks:
            entry = data[task]
            names = entry.get("labels") if isinstance(entry, dict) else ()
            if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
                raise MtkitError(f"{file}: damaged: tasks.{task}.labels is {names!r}, not a list of label names or null")
            labels[task] = tuple(names) if names else None
        return labels

    def log(self, record: dict[str, Any]) -> None:
        with (self.path / "metrics.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")

    def truncate_logs(self, global_step: int, drop: Callable[[dict[str, Any]], bool] | None = None) -> None:
        """Drop log records written after `global_step`, and those `drop` picks (a resumed run writes them again)."""
        kept = [r for r in self.logs() if r.get("global_step", 0) <= global_step and not (drop and drop(r))]
        tmp = self.path / "metrics.jsonl.tmp"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        os.replace(tmp, self.path / "metrics.jsonl")

    def logs(self) -> list[dict[str, Any]]:
        file = self.path / "metrics.jsonl"
        if not file.is_file():
            return []
        return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
