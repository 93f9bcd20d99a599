"""What a training run reports as it goes (progress bars, live tables): the callbacks protocol, and the silent default."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

__all__ = ["Callbacks", "SilentCallbacks"]


class Callbacks(Protocol):
    """Hooks the trainer calls on the main process: a phase starts, a step ends, a scoring or a probe scoring is done."""

    def phase_started(self, name: str, steps: int, start: int) -> None: ...

    def step_done(self, step: int, logs: Mapping[str, float]) -> None: ...

    def evaluated(
        self, phase: str, routing: str, scores: Mapping[str, Mapping[str, float]], intervals: Mapping[str, Mapping[str, list[float]]]
    ) -> None: ...

    def probes_evaluated(self, routing: str, scores: Mapping[str, Mapping[str, Mapping[str, float]]]) -> None: ...


class SilentCallbacks:
    """Callbacks that report nothing (other processes than the main one, and runs without a display)."""

    def phase_started(self, name: str, steps: int, start: int) -> None:
        pass

    def step_done(self, step: int, logs: Mapping[str, float]) -> None:
        pass

    def evaluated(
        self, phase: str, routing: str, scores: Mapping[str, Mapping[str, float]], intervals: Mapping[str, Mapping[str, list[float]]]
    ) -> None:
        pass

    def probes_evaluated(self, routing: str, scores: Mapping[str, Mapping[str, Mapping[str, float]]]) -> None:
        pass
