"""Broken command lines: wrong paths, options and input files for each command."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from tests.broken.case import Case, Workspace
from tests.broken.support import dump_toml, review_rows, tiny_recipe, write_jsonl

Build = Callable[[Workspace], tuple[list[str], list[str]]]


def _recipe(ws: Workspace, out: Path, **run: object) -> Path:
    data = write_jsonl(ws.tmp / "reviews.jsonl", review_rows())
    recipe = tiny_recipe({"type": "json", "data_files": str(data)}, out)
    recipe["run"] |= run
    path = ws.tmp / "recipe.toml"
    path.write_text(dump_toml(recipe), encoding="utf-8")
    return path


def _output_dir_file(ws: Workspace) -> tuple[list[str], list[str]]:
    blocker = ws.tmp / "taken"
    blocker.write_text("not a folder", encoding="utf-8")
    path = _recipe(ws, blocker)
    return ["run", str(path)], [str(path), f"run.output_dir {str(blocker)!r} is an existing file"]


def _output_dir_under_file(ws: Workspace) -> tuple[list[str], list[str]]:
    blocker = ws.tmp / "taken"
    blocker.write_text("not a folder", encoding="utf-8")
    path = _recipe(ws, blocker / "run")
    return ["run", str(path), "--overwrite"], [str(path), f"run.output_dir {str(blocker / 'run')!r} cannot be created"]


def _locked(ws: Workspace) -> tuple[list[str], list[str]]:
    from mtkit.rundir.lock import hold_run_dir

    out = ws.tmp / "run"
    path = _recipe(ws, out)
    # Held by this process through another open file: flock refuses it to the run all the same.
    held = ExitStack()
    held.enter_context(hold_run_dir(out))
    ws.request.addfinalizer(held.close)
    return ["run", str(path), "--overwrite"], [str(out), "another mtkit run is writing", f"pid {os.getpid()} on host {socket.gethostname()!r}"]


def _resume_other_recipe(ws: Workspace) -> tuple[list[str], list[str]]:
    run = ws.run_copy()
    recipe = ws.tmp / "changed.json"
    changed = json.loads((run / "recipe.json").read_text(encoding="utf-8"))
    changed["run"] |= {"seed": 1, "output_dir": str(run)}  # the copy, never the shared run
    recipe.write_text(json.dumps(changed), encoding="utf-8")
    return ["run", str(recipe), "--resume"], [str(run), "--resume with a recipe that differs"]


def _latin1_inputs(ws: Workspace) -> tuple[list[str], list[str]]:
    inputs = ws.tmp / "inputs.txt"
    inputs.write_bytes("a fine film\nun caf\u00e9 tranquille\n".encode("latin-1"))
    return ["predict", str(ws.finished_run), "--file", str(inputs)], [str(inputs), "byte 0xe9 at line 2, column 7"]


def _utf16_inputs(ws: Workspace) -> tuple[list[str], list[str]]:
    inputs = ws.tmp / "inputs.txt"
    inputs.write_bytes("a fine film\n".encode("utf-16-le"))
    return ["predict", str(ws.finished_run), "--file", str(inputs)], [str(inputs), "NUL byte at line 1"]


def _finished(argv: Callable[[Path, Path], list[str]], fragments: Callable[[Path, Path], list[str]]) -> Build:
    """A command line over the shared finished run (read only)."""

    def build(ws: Workspace) -> tuple[list[str], list[str]]:
        return argv(ws.finished_run, ws.tmp), fragments(ws.finished_run, ws.tmp)

    return build


def _plain(argv: Callable[[Path], list[str]], fragments: Callable[[Path], list[str]]) -> Build:
    def build(ws: Workspace) -> tuple[list[str], list[str]]:
        return argv(ws.tmp), fragments(ws.tmp)

    return build


def _empty_dir(tmp: Path) -> Path:
    (tmp / "empty").mkdir(exist_ok=True)
    return tmp / "empty"


def _file(tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("hello\n", encoding="utf-8")
    return tmp / "notes.txt"


CASES: dict[str, Build] = {
    "run-missing-recipe": _plain(lambda t: ["run", str(t / "nope.toml")], lambda t: [str(t / "nope.toml"), "no such recipe file"]),
    "run-directory-as-recipe": _plain(lambda t: ["run", str(t)], lambda t: [str(t), "is a directory, not a recipe file"]),
    "run-run-directory-as-recipe": _finished(lambda r, t: ["run", str(r)], lambda r, t: [str(r), f"pass {r / 'recipe.json'}"]),
    "run-output-dir-is-a-file": _output_dir_file,
    "run-output-dir-under-a-file": _output_dir_under_file,
    "run-locked-run-directory": _locked,
    "run-resume-other-recipe": _resume_other_recipe,
    "run-set-without-equals": _plain(lambda t: ["run", str(_recipe_path(t)), "--set", "run.seed"], lambda t: [str(_recipe_path(t)), "must look like key.path=value"]),
    "validate-missing-recipe": _plain(lambda t: ["validate", str(t / "nope.toml")], lambda t: [str(t / "nope.toml"), "no such recipe file"]),
    "eval-bad-routing": _finished(lambda r, t: ["eval", str(r), "--routing", "psychic"], lambda r, t: ["--routing 'psychic'", "use oracle, learned or base"]),
    "eval-bad-split": _finished(lambda r, t: ["eval", str(r), "--split", "train"], lambda r, t: ["--split 'train'", "test or validation"]),
    "eval-unknown-task": _finished(lambda r, t: ["eval", str(r), "--task", "nope"], lambda r, t: ["--task nope", "tasks: reviews"]),
    "eval-missing-run": _plain(lambda t: ["eval", str(t / "nope")], lambda t: [str(t / "nope"), "not a run directory (no such folder)"]),
    "eval-file-as-run": _plain(lambda t: ["eval", str(_file(t))], lambda t: [str(t / "notes.txt"), "is a file"]),
    "eval-not-a-run": _plain(lambda t: ["eval", str(_empty_dir(t))], lambda t: [str(t / "empty"), "no recipe.json"]),
    "predict-no-inputs": _finished(lambda r, t: ["predict", str(r)], lambda r, t: ["no inputs", "--file"]),
    "predict-missing-file": _finished(lambda r, t: ["predict", str(r), "--file", str(t / "nope.txt")], lambda r, t: [str(t / "nope.txt"), "no such input file"]),
    "predict-directory-as-file": _finished(lambda r, t: ["predict", str(r), "--file", str(t)], lambda r, t: [str(t), "is a directory"]),
    "predict-latin1-file": _latin1_inputs,
    "predict-utf16-file": _utf16_inputs,
    "predict-unknown-task": _finished(lambda r, t: ["predict", str(r), "nice", "--task", "nope"], lambda r, t: ["--task 'nope'", "tasks: reviews"]),
    "predict-missing-run": _plain(lambda t: ["predict", str(t / "nope"), "nice"], lambda t: [str(t / "nope"), "not a run directory (no such folder)"]),
    "export-format-onnx": _finished(
        lambda r, t: ["export", str(r), str(t / "out"), "--format", "onnx"],
        lambda r, t: [str(r), "--format 'onnx' is not an export format (known: hf, peft)", "--format peft"],
    ),
    "export-unknown-adapter": _finished(lambda r, t: ["export", str(r), str(t / "out"), "--adapter", "nope"], lambda r, t: ["--adapter 'nope'", "adapters: reviews"]),
    "list-components-unknown-kind": _plain(lambda t: ["list-components", "--kind", "widget"], lambda t: ["--kind 'widget'", "adapter"]),
    "show-unknown-adapter": _plain(lambda t: ["show", "adapter", "lorra"], lambda t: ["'lorra' is not a registered adapter"]),
    "ablate-swap-without-values": _plain(lambda t: ["ablate", str(_recipe_path(t)), "--swap", "combiner.type"], lambda t: ["--swap 'combiner.type'", "key.path=value1,value2"]),
    "ablate-variant-without-name": _plain(lambda t: ["ablate", str(_recipe_path(t)), "--variant", "no colon"], lambda t: ["--variant 'no colon'", "name: key.path=value"]),
}


def _recipe_path(tmp: Path) -> Path:
    """A valid tiny recipe in `tmp` (for command lines whose options are what is broken)."""
    data = write_jsonl(tmp / "reviews.jsonl", review_rows())
    path = tmp / "recipe.toml"
    if not path.exists():
        path.write_text(dump_toml(tiny_recipe({"type": "json", "data_files": str(data)}, tmp / "run")), encoding="utf-8")
    return path


def cli_cases() -> list[Case]:
    """Every broken command-line case."""
    return [Case(f"cli-{name}", build) for name, build in CASES.items()]
