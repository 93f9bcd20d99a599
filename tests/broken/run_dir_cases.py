"""Damaged run directories: a copy of the one finished run, with one file cut, emptied, garbled, swapped or edited.

Each damage is checked with predict, eval and export, first as they run by default (the manifest
catches every change and names the file), then, for damage that breaks the run's structure, with
--no-verify (the reader itself must still name the file and what it does not match, never a
traceback). Edits that keep the structure (swapped label names, another pooling) are refused by the
manifest only: with --no-verify the user said they edited on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mtkit.rundir.manifest import write_manifest
from tests.broken.case import Case, Workspace
from tests.broken.support import review_rows, write_jsonl

Apply = Callable[[Path], list[str]]
"""Damage the run copy in place; return the fragments (beyond the file) the message must contain."""


def _cut(name: str, keep: Callable[[int], int]) -> Apply:
    def damage(run: Path) -> list[str]:
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: keep(len(data))])
        return []

    return damage


def _garble_header(run: Path) -> list[str]:
    data = bytearray((run / "model.safetensors").read_bytes())
    data[8:40] = b"\xff" * 32  # the JSON header right after its 8-byte length
    (run / "model.safetensors").write_bytes(bytes(data))
    return []


def _flip_weights(run: Path) -> list[str]:
    data = bytearray((run / "model.safetensors").read_bytes())
    data[-16:] = bytes(255 - b for b in data[-16:])  # tensor bytes: still a valid file, other weights
    (run / "model.safetensors").write_bytes(bytes(data))
    return []


def _delete(name: str) -> Apply:
    def damage(run: Path) -> list[str]:
        (run / name).unlink()
        return []

    return damage


def _edit_json(name: str, edit: Callable[[object], object]) -> Apply:
    def damage(run: Path) -> list[str]:
        path = run / name
        # Written as the run writes it, so that a same-size edit is caught by its hash, not its size.
        path.write_text(json.dumps(edit(json.loads(path.read_text(encoding="utf-8"))), indent=2) + "\n", encoding="utf-8")
        return []

    return damage


def _other_run(recipe: object) -> object:
    assert isinstance(recipe, dict)
    recipe["adapters"] = {"other": recipe["adapters"]["reviews"]}
    recipe["tasks"]["reviews"]["adapter"] = "other"
    return recipe


def _rank(recipe: object) -> object:
    assert isinstance(recipe, dict)
    recipe["adapters"]["reviews"]["rank"] = 4
    return recipe


def _pooling(recipe: object) -> object:
    assert isinstance(recipe, dict)
    recipe["tasks"]["reviews"]["head"]["pooling"] = "mean"
    return recipe


def _label_added(tasks: object) -> object:
    assert isinstance(tasks, dict)
    tasks["reviews"]["labels"].append("meh")
    return tasks


def _labels_swapped(tasks: object) -> object:
    assert isinstance(tasks, dict)
    tasks["reviews"]["labels"].reverse()
    return tasks


def _changed_data(run: Path) -> list[str]:
    """The run's data file replaced by a smaller one after the run (the manifest rewritten to match)."""
    data = write_jsonl(run / "other.jsonl", review_rows(12))
    recipe = json.loads((run / "recipe.json").read_text(encoding="utf-8"))
    recipe["tasks"]["reviews"]["dataset"]["data_files"] = str(data)
    (run / "recipe.json").write_text(json.dumps(recipe, indent=2), encoding="utf-8")
    write_manifest(run)
    return ["task 'reviews' had", "the data changed since the run"]




def _half(size: int) -> int:
    return size // 2

@dataclass(frozen=True)
class Damage:
    file: str  # the damaged file ("" for the run directory itself)
    apply: Callable[[Path], list[str]]  # damages the copy in place; returns further fragments the message must hold
    verified: str  # what the message says by default (the manifest check)
    unverified: str | None = None  # what it says with --no-verify; None: the damage keeps the structure (user's edit)
    blamed: str | None = None  # the file the reader names with --no-verify, when it is another one


MODEL_VS_RECIPE = "does not match the model built from recipe.json and tasks.json"
DAMAGES: dict[str, Damage] = {
    "model-cut": Damage("model.safetensors", _cut("model.safetensors", _half), "cut short", "damaged, not a readable safetensors file"),
    "model-emptied": Damage("model.safetensors", _cut("model.safetensors", lambda n: 0), "emptied", "not a readable safetensors file (0 bytes"),
    "model-10-bytes": Damage("model.safetensors", _cut("model.safetensors", lambda n: 10), "has 10 bytes", "not a readable safetensors file"),
    "model-header-garbled": Damage("model.safetensors", _garble_header, "does not match its sha256", "not a readable safetensors file"),
    "model-weights-flipped": Damage("model.safetensors", _flip_weights, "does not match its sha256"),
    "model-deleted": Damage("model.safetensors", _delete("model.safetensors"), "missing, though manifest.json lists it", "missing"),
    "recipe-cut": Damage("recipe.json", _cut("recipe.json", _half), "cut short", "damaged, not valid JSON"),
    "recipe-of-another-run": Damage(
        "recipe.json", _edit_json("recipe.json", _other_run), "manifest.json", MODEL_VS_RECIPE, blamed="model.safetensors"
    ),
    "recipe-rank-changed": Damage("recipe.json", _edit_json("recipe.json", _rank), "manifest.json", MODEL_VS_RECIPE, blamed="model.safetensors"),
    "recipe-pooling-changed": Damage("recipe.json", _edit_json("recipe.json", _pooling), "manifest.json"),
    "recipe-not-an-object": Damage("recipe.json", _edit_json("recipe.json", lambda r: [r]), "manifest.json", "not a recipe"),
    "tasks-label-added": Damage(
        "tasks.json", _edit_json("tasks.json", _label_added), "manifest.json", MODEL_VS_RECIPE, blamed="model.safetensors"
    ),
    "tasks-labels-swapped": Damage("tasks.json", _edit_json("tasks.json", _labels_swapped), "does not match its sha256"),
    "tasks-task-missing": Damage("tasks.json", _edit_json("tasks.json", lambda t: {}), "manifest.json", "has no entry for task(s) 'reviews'"),
    "tasks-cut": Damage("tasks.json", _cut("tasks.json", _half), "cut short", "damaged, not valid JSON"),
    "tasks-deleted": Damage("tasks.json", _delete("tasks.json"), "missing, though manifest.json lists it", "missing"),
    "manifest-deleted": Damage("", _delete("manifest.json"), "has no manifest.json"),
    "manifest-garbled": Damage("manifest.json", _cut("manifest.json", _half), "damaged"),
}
COMMANDS: dict[str, Callable[[Path, Path], list[str]]] = {
    "predict": lambda run, tmp: ["predict", str(run), "a warm and clever film"],
    "eval": lambda run, tmp: ["eval", str(run)],
    "export": lambda run, tmp: ["export", str(run), str(tmp / "exported")],
}
NO_VERIFY_EVAL = {"model-cut", "recipe-rank-changed", "tasks-task-missing"}  # eval rebuilds data too: a few suffice


def _case(name: str, command: str, no_verify: bool) -> Case:
    damage = DAMAGES[name]

    def build(ws: Workspace) -> tuple[list[str], list[str]]:
        run = ws.run_copy()
        extra = damage.apply(run)
        file = (damage.blamed or damage.file) if no_verify else damage.file
        argv = COMMANDS[command](run, ws.tmp) + (["--no-verify"] if no_verify else [])
        said = damage.unverified if no_verify else damage.verified
        assert said is not None
        return argv, [str(run / file) if file else str(run), said, *extra]

    return Case(f"rundir-{name}-{command}" + ("-no-verify" if no_verify else ""), build)


def _data_case() -> Case:
    def build(ws: Workspace) -> tuple[list[str], list[str]]:
        run = ws.run_copy()
        return ["eval", str(run)], [str(run / "data.json"), *_changed_data(run)]

    return Case("rundir-data-changed-eval", build)


def run_dir_cases() -> list[Case]:
    """Every generated damaged-run-directory case."""
    cases = [_case(name, command, False) for name in DAMAGES for command in COMMANDS]
    for name, damage in DAMAGES.items():
        if damage.unverified is not None:
            cases += [_case(name, command, True) for command in COMMANDS if command != "eval" or name in NO_VERIFY_EVAL]
    return [*cases, _data_case()]
