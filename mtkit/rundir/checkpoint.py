"""Checkpoints in safetensors + JSON, written atomically.

A checkpoint is a folder `checkpoints/step-NNNNNNN` written under a temporary name and renamed
into place, then named in `checkpoints/latest` (replaced atomically). A crash at any point leaves
the previous checkpoint and pointer intact. Nothing here ever unpickles.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from mtkit.api.errors import MtkitError

__all__ = [
    "check_state_matches",
    "load_latest",
    "load_optimizer_state",
    "load_tensors",
    "optimizer_state",
    "save_checkpoint",
    "save_tensors",
    "write_json_atomic",
]

KEEP = 2


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def save_tensors(path: Path, tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None) -> None:
    """Save tensors atomically; shared storage (tied weights) is copied apart first."""
    seen: set[int] = set()
    out = {}
    for key, value in tensors.items():
        value = value.detach().cpu().contiguous()
        if value.data_ptr() in seen:
            value = value.clone()
        seen.add(value.data_ptr())
        out[key] = value
    tmp = path.with_name(path.name + ".tmp")
    save_file(out, str(tmp), metadata=dict(metadata or {}))
    os.replace(tmp, path)


def load_tensors(path: Path) -> dict[str, Tensor]:
    """The tensors of a safetensors file; a missing, cut or damaged file is an MtkitError naming it."""
    if not path.is_file():
        raise MtkitError(f"{path}: missing; the run directory is incomplete (was the run finished?)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise MtkitError(
            f"{path}: damaged, not a readable safetensors file ({path.stat().st_size} bytes: {detail}); restore it from a copy, "
            "or run the recipe again"
        ) from None


def check_state_matches(expected: Mapping[str, Tensor], found: Mapping[str, Tensor], file: Path, against: str) -> None:
    """Every tensor in `found` (read from `file`) exists in `expected` with the same shape.

    Raises:
        MtkitError: naming the first tensor that is unknown or has another shape, and what it was checked against.
    """
    unknown = sorted(set(found) - set(expected))
    if unknown:
        raise MtkitError(
            f"{file}: does not match the model built from {against}: it holds {len(unknown)} tensor(s) the model lacks "
            f"(e.g. {unknown[0]!r}); the files come from different runs"
        )
    for key, tensor in found.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise MtkitError(
                f"{file}: does not match the model built from {against}: {key!r} has shape {tuple(tensor.shape)} in the file "
                f"but {tuple(expected[key].shape)} in the model; the files come from different runs or one was edited"
            )


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """An optimizer state dict split into tensors (safetensors) and the rest (JSON)."""
    state = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, _, name = key.partition(".")
        state.setdefault(int(index), {})[name] = value
    for index, scalars in meta["scalars"].items():
        state.setdefault(int(index), {}).update(scalars)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    run_dir: Path,
    step: int,
    model_state: Mapping[str, Tensor],
    optimizer: torch.optim.Optimizer | None,
    train_state: Mapping[str, Any],
    extra: Mapping[str, Mapping[str, Tensor]] | None = None,
) -> Path:
    """Write checkpoint `step` (model, optimizer, train state and any `extra` tensor files by name)."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:07d}"
    final = root / name
    tmp = root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_tensors(tmp / "model.safetensors", model_state)
    if optimizer is not None:
        tensors, meta = optimizer_state(optimizer)
        save_tensors(tmp / "optimizer.safetensors", tensors)
        write_json_atomic(tmp / "optimizer.json", meta)
    for filename, extra_tensors in (extra or {}).items():
        save_tensors(tmp / filename, extra_tensors)
    write_json_atomic(tmp / "state.json", dict(train_state))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer = root / "latest"
    pointer_tmp = root / "latest.tmp"
    pointer_tmp.write_text(name + "\n", encoding="utf-8")
    os.replace(pointer_tmp, pointer)
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_latest(run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The latest complete checkpoint folder and its train state, or None if there is none."""
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    folder = run_dir / "checkpoints" / pointer.read_text(encoding="utf-8").strip()
    state_file = folder / "state.json"
    if not state_file.is_file():
        raise MtkitError(f"{folder}: checkpoint named by {pointer} is incomplete; delete the run directory to start over")
    return folder, json.loads(state_file.read_text(encoding="utf-8"))
