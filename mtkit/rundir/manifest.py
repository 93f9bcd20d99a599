"""The manifest of a finished run: the sha256 of every file that predict, eval, export and comparisons read.

`mtkit run` writes `manifest.json` last, so a run directory with a manifest is a finished one. The
commands that read a run check the files against it and refuse one that changed, was cut or is
missing (a changed label list or pooling would otherwise change predictions without a word).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mtkit.api.errors import MtkitError
from mtkit.rundir.checkpoint import write_json_atomic

__all__ = ["MANIFEST", "RUN_FILES", "manifest_digest", "verify_manifest", "write_manifest"]

MANIFEST = "manifest.json"
RUN_FILES = ("recipe.json", "tasks.json", "data.json", "model.safetensors", "results.json", "probes.json", "parameters.json", "routing.json")
"""Files of a run directory the manifest covers, where the run wrote them."""

_FIX = "restore it from a copy, or pass --no-verify if you changed it on purpose"


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_manifest(run_dir: Path) -> None:
    """Record the size and sha256 of each of RUN_FILES present in `run_dir`."""
    files = {name: {"bytes": (run_dir / name).stat().st_size, "sha256": _sha256(run_dir / name)} for name in RUN_FILES if (run_dir / name).is_file()}
    write_json_atomic(run_dir / MANIFEST, {"format": 1, "algorithm": "sha256", "files": files})


def manifest_digest(run_dir: Path) -> str | None:
    """The sha256 of the run's manifest.json (which pins every other file), or None for a run without one."""
    path = run_dir / MANIFEST
    return _sha256(path) if path.is_file() else None


def _read(run_dir: Path) -> dict[str, dict[str, Any]]:
    path = run_dir / MANIFEST
    if not path.is_file():
        raise MtkitError(
            f"{run_dir}: has no {MANIFEST}, so its files cannot be checked (the run did not finish, or an mtkit that kept no "
            "manifests wrote it); finish it with `mtkit run ... --resume`, or pass --no-verify to use it as it is"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = data["files"]
        if not all(isinstance(v, dict) and isinstance(v["sha256"], str) and isinstance(v["bytes"], int) for v in files.values()):
            raise TypeError
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        raise MtkitError(f"{path}: damaged (not the manifest `mtkit run` writes); {_FIX}") from None
    return files  # type: ignore[no-any-return]


def verify_manifest(run_dir: Path) -> None:
    """Check the run's files against its manifest.

    Raises:
        MtkitError: no manifest, a damaged one, or a file that is missing or differs from its record;
            the message names the first such file and what it does not match.
    """
    problems = []
    for name, record in _read(run_dir).items():
        path = run_dir / name
        if not path.is_file():
            problems.append(f"{path}: missing, though {MANIFEST} lists it ({record['bytes']} bytes)")
        elif path.stat().st_size != record["bytes"]:
            size = path.stat().st_size
            what = "emptied" if size == 0 else "cut short" if size < record["bytes"] else "grown"
            problems.append(f"{path}: has {size} bytes where {MANIFEST} records {record['bytes']} ({what} after the run finished)")
        elif _sha256(path) != record["sha256"]:
            problems.append(
                f"{path}: does not match its sha256 in {MANIFEST} (changed after the run finished: "
                f"{record['sha256'][:12]}... recorded, {_sha256(path)[:12]}... now)"
            )
    if problems:
        also = f" (also: {'; '.join(p.split(': ', 1)[0] for p in problems[1:])})" if len(problems) > 1 else ""
        raise MtkitError(f"{problems[0]}; {_FIX}{also}")
