"""The run directory: where a run's recipe, data splits, metrics, weights and report live."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtkit.checkpoint import write_json_atomic
from mtkit.errors import MtkitError

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
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, path: Path, *, resume: bool, overwrite: bool) -> RunDir:
        if path.exists() and any(path.iterdir()) and not resume:
            if not overwrite:
                raise MtkitError(
                    f"{path}: run directory already exists; pass --resume to continue it, --overwrite to replace it, "
                    "or --set run.output_dir=<new dir>"
                )
            shutil.rmtree(path)
        if resume and not (path / "checkpoints" / "latest").is_file():
            raise MtkitError(f"{path}: nothing to resume (no checkpoint); run without --resume to start it")
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> RunDir:
        if not (path / "recipe.json").is_file():
            raise MtkitError(f"{path}: not a run directory (no recipe.json); pass the folder `mtkit run` wrote")
        return cls(path)

    def write_json(self, name: str, data: Any) -> None:
        write_json_atomic(self.path / name, data)

    def read_json(self, name: str) -> Any:
        file = self.path / name
        if not file.is_file():
            raise MtkitError(f"{file}: missing; the run did not finish (try `mtkit run ... --resume`)")
        return json.loads(file.read_text(encoding="utf-8"))

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
