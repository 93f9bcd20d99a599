"""A run directory is guarded: one writer at a time (an OS lock), and a run killed before its first checkpoint resumes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtkit import MtkitError
from mtkit.rundir.lock import LOCK_FILE, hold_run_dir
from mtkit.train.run import run_recipe
from tests.broken.support import dump_toml, review_rows, tiny_recipe, write_jsonl
from tests.conftest import ROOT

HOLD = """
import sys, time
from pathlib import Path
from mtkit.rundir.lock import hold_run_dir
with hold_run_dir(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(600)
"""


def _recipe(tmp_path: Path, out: Path, *, steps: int = 2) -> Path:
    data = write_jsonl(tmp_path / "reviews.jsonl", review_rows())
    path = tmp_path / "recipe.toml"
    path.write_text(dump_toml(tiny_recipe({"type": "json", "data_files": str(data)}, out, steps=steps)), encoding="utf-8")
    return path


def _mtkit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "mtkit", *args], check=False, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_lock_second_run_exits_2_naming_the_holder_until_it_is_killed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("written by the run that holds the lock", encoding="utf-8")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        second = _mtkit("run", str(_recipe(tmp_path, out)), "--overwrite", cwd=tmp_path)
        assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
        assert f"{out}: another mtkit run is writing this run directory (pid {holder.pid} on host {socket.gethostname()!r}" in second.stderr
        assert (out / "keep.txt").is_file()  # --overwrite did not wipe a directory in use
        with pytest.raises(MtkitError, match=rf"pid {holder.pid} on host"), hold_run_dir(out):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    with hold_run_dir(out):  # a killed holder's lock is gone with its process
        assert json.loads((out / LOCK_FILE).read_text(encoding="utf-8"))["pid"] == os.getpid()


def test_lock_output_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(MtkitError, match=r"run.output_dir is an existing file"), hold_run_dir(blocker):
        pass


class _Notices:
    """Run callbacks that keep the notices and ignore the progress."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def notice(self, message: str) -> None:
        self.messages.append(message)

    def phase_started(self, name: str, steps: int, start: int) -> None: ...

    def step_done(self, step: int, logs: object) -> None: ...

    def evaluated(self, phase: str, routing: str, scores: object, intervals: object) -> None: ...


def test_run_killed_before_first_checkpoint_resumes_from_step_0(tmp_path: Path) -> None:
    """A real SIGKILL of `mtkit run` while it trains and has no checkpoint yet, then --resume."""
    out = tmp_path / "run"
    recipe = _recipe(tmp_path, out, steps=30)  # checkpoint_every = 0: the first checkpoint is at the phase's end
    victim = subprocess.Popen(
        [sys.executable, "-m", "mtkit", "run", str(recipe)], cwd=tmp_path, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not any('"loss"' in line for line in _lines(out / "metrics.jsonl")):
        assert victim.poll() is None and time.monotonic() < deadline, "the run ended or hung before training"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    assert not (out / "checkpoints" / "latest").exists()

    with pytest.raises(MtkitError, match=r"already exists; pass --resume to continue it \(it has no checkpoint, so --resume starts it from step 0\)"):
        run_recipe(recipe)
    notices = _Notices()
    run_recipe(recipe, resume=True, callbacks=notices)
    assert notices.messages == [f"{out}: no checkpoint to resume from (the run stopped before its first one); starting from step 0"]
    steps = [json.loads(line)["step"] for line in _lines(out / "metrics.jsonl") if '"loss"' in line]
    assert steps == sorted(set(steps)) and steps[-1] == 30  # the killed attempt's lines were dropped, none repeats
    assert (out / "manifest.json").is_file()


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
