"""The trainer's checkpoints: writing one (model, optimiser, balancers, best weights, the run's results so far),
resuming from the latest, and the error a diverged step raises, which names the checkpoint it leaves intact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor

from mtkit.api.errors import MtkitError
from mtkit.api.interfaces import Balancer
from mtkit.model.multitask import MultiTaskModel
from mtkit.recipe.schema import PhaseSection, Recipe
from mtkit.rundir import checkpoint as ckpt
from mtkit.rundir.layout import RunDir
from mtkit.train import balancing
from mtkit.train.keep_best import FILE as BEST_FILE
from mtkit.train.keep_best import BestWeights

__all__ = ["Checkpointing", "Resumed"]


class Resumed:
    """Where a resumed run continues: its phase and step, and the checkpoint folder holding the optimiser state of a
    phase resumed mid-way (None when it resumes at a phase's start)."""

    def __init__(self, phase: int = 0, step: int = 0, optimizer_files: Path | None = None) -> None:
        self.phase, self.step, self.optimizer_files = phase, step, optimizer_files


class Checkpointing:
    """Checkpoint methods of the trainer (a base class of `Trainer`, which sets these attributes)."""

    built: Any
    recipe: Recipe
    model: MultiTaskModel
    run_dir: RunDir
    main: bool
    balancers: dict[str, Balancer]
    results: dict[str, dict[str, dict[str, dict[str, float]]]]
    intervals: dict[str, dict[str, dict[str, dict[str, list[float]]]]]
    trained: set[str]
    saved_keys: list[str]
    _resumed_best: dict[str, Any] | None

    def model_state(self) -> dict[str, Tensor]:
        state = self.model.state_dict()
        return {k: state[k] for k in self.saved_keys}

    def _restore(self) -> Resumed:
        """Load the latest checkpoint into the model, balancers and results; drop the log records after it."""
        found = ckpt.load_latest(self.run_dir.path)
        assert found is not None, "RunDir.create checks that a checkpoint exists"
        folder, state = found
        self.model.load_state_dict(ckpt.load_tensors(folder / "model.safetensors"), strict=False)
        if "balancers" in state:
            tensors = ckpt.load_tensors(folder / balancing.FILE) if any(r["keys"] for r in state["balancers"].values()) else {}
            balancing.load_balancer_state(self.balancers, tensors, state["balancers"], str(folder))
        resumed = Resumed(state["phase"], state["step"], folder if state["step"] > 0 else None)
        self.results = state["results"]
        self.intervals = state.get("intervals", {})
        self.trained = set(state.get("trained", []))
        self._resumed_best = state.get("best")
        if self.main:
            # Records up to the checkpoint stay; a phase resumed from its start scores its step-0 validation again.
            phases = self.recipe.phases
            restarted = phases[resumed.phase].name if resumed.step == 0 and resumed.phase < len(phases) else None

            def replayed(record: dict[str, Any]) -> bool:
                return record.get("event") == "validation" and record.get("phase") == restarted and record.get("step") == 0

            self.run_dir.truncate_logs(state["global_step"], drop=replayed)
        return resumed

    @staticmethod
    def _load_optimizer(optimizer: Any, schedule: Any, folder: Path, first: int) -> None:
        """The optimiser state saved at step `first` of a phase, and its learning-rate schedule continued from there."""
        ckpt.load_optimizer_state(
            optimizer, ckpt.load_tensors(folder / "optimizer.safetensors"), json.loads((folder / "optimizer.json").read_text())
        )
        # The saved param groups hold the learning rates of step `first` (stepping the schedule `first` times before
        # any optimiser step would warn and do the same).
        schedule.last_epoch = first
        schedule._last_lr = [group["lr"] for group in optimizer.param_groups]

    def _checkpoint(self, global_step: int, optimizer: Any, phase: int, step: int, best: BestWeights | None = None) -> None:
        if not self.main:
            return
        state = {
            "phase": phase, "step": step, "global_step": global_step, "results": self.results, "intervals": self.intervals,
            "trained": sorted(self.trained),
        }
        extra = {}
        if best is not None:
            state["best"] = best.kept()
            extra = {BEST_FILE: best.tensors} if best.tensors else {}  # copies of the best weights so far
        tensors, state["balancers"] = balancing.save_balancer_state(self.balancers)
        if tensors:
            extra[balancing.FILE] = tensors
        ckpt.save_checkpoint(self.run_dir.path, global_step, self.model_state(), optimizer, state, extra)

    def _diverged(self, index: int, phase: PhaseSection, step: int, what: str) -> MtkitError:
        """The error of a step whose loss or gradient is not finite, naming the checkpoint left intact."""
        latest = ckpt.load_latest(self.run_dir.path) if self.main else None
        kept = f"the last checkpoint ({latest[0].name}) is kept" if latest else "no checkpoint was written before it"
        return MtkitError(
            f"{self.built.source}: phases.{index} ({phase.name!r}), step {step + 1}: {what}, so training diverged; {kept}. "
            f"Lower phases.{index}.lr, check the adapters' alpha and scale, and run again (--overwrite)"
        )
