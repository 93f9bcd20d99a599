"""A broken-input case: how to build its files and command line, and what its message must name."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Workspace:
    """A case's own folder, and the one finished run the corpus shares (built on first use)."""

    tmp: Path
    request: pytest.FixtureRequest
    env: dict[str, str] = field(default_factory=dict)  # extra environment for a subprocess case

    @property
    def finished_run(self) -> Path:
        """The shared finished run (never modify it: copy it with `run_copy`)."""
        path: Path = self.request.getfixturevalue("finished_run")
        return path

    def run_copy(self, name: str = "run") -> Path:
        """A copy of the finished run's files that predict, eval and export read (checkpoints left out)."""
        target = self.tmp / name
        shutil.copytree(self.finished_run, target, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "*.png", ".lock"))
        return target


Build = Callable[[Workspace], tuple[list[str], list[str]]]
"""Writes the case's files; returns the `mtkit` arguments and the fragments its error message must contain."""


@dataclass
class Case:
    id: str
    build: Build
    marks: list[Any] = field(default_factory=list)
    subprocess: bool = False  # run as a real `python -m mtkit` process (a handful; in-process is faster)

    def param(self) -> Any:
        return pytest.param(self, id=self.id, marks=list(self.marks))
