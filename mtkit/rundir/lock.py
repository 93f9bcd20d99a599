"""An exclusive lock on a run directory while a run writes it.

The lock is an OS lock (`fcntl.flock`) on the file `<run dir>/.lock`, so it belongs to the process:
a process that ends in any way (killed with -9 included) releases it, and a stale lock file never
blocks the next run. The file records who holds the lock, so that a second run can name it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from mtkit.api.errors import MtkitError

__all__ = ["LOCK_FILE", "hold_run_dir", "holder"]

LOCK_FILE = ".lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: runs are not locked there
    fcntl = None  # type: ignore[assignment]


def holder(run_dir: Path) -> str:
    """Who holds (or last held) the lock of `run_dir`, in words."""
    try:
        info = json.loads((run_dir / LOCK_FILE).read_text(encoding="utf-8"))
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"]))
        return f"pid {info['pid']} on host {info['host']!r}, since {started}"
    except (OSError, ValueError, KeyError, TypeError):  # written by the holder a moment after it locked
        return "a process that has not recorded its pid yet"


def _open(run_dir: Path) -> IO[str]:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        # Not truncated on open: the holder's record must stay readable to whoever fails to lock.
        return open(run_dir / LOCK_FILE, "a+", encoding="utf-8")  # closed by hold_run_dir
    except FileExistsError:
        raise MtkitError(f"{run_dir}: run.output_dir is an existing file, not a directory; choose another run.output_dir") from None
    except NotADirectoryError:
        raise MtkitError(f"{run_dir}: a parent of run.output_dir is a file, not a directory; choose another run.output_dir") from None
    except OSError as exc:
        raise MtkitError(
            f"{run_dir}: cannot create the run directory ({exc.strerror or type(exc).__name__}); choose a writable run.output_dir"
        ) from None


@contextmanager
def hold_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock for the block (the directory is created if needed).

    Raises:
        MtkitError: another process holds the lock, or the directory cannot be created.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise MtkitError(f"{run_dir}: run.output_dir is an existing file, not a directory; choose another run.output_dir")
    handle = _open(run_dir)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise MtkitError(
                    f"{run_dir}: another mtkit run is writing this run directory ({holder(run_dir)}); wait for it to end, "
                    "or give this run another run.output_dir"
                ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}) + "\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing the descriptor releases the lock
