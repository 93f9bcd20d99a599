"""The broken-input corpus: every generated case exits 2 with one message naming the file and the key path or row.

Cases come from generators (recipe_cases, data_cases, run_dir_cases, cli_cases, core_cases), derived from
the shipped recipes, one small dataset and one finished run. Most run in-process through the Typer app;
the few marked `subprocess` run as real `python -m mtkit` processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtkit import load_registry
from mtkit.cli.app import app
from tests.broken.case import Case, Workspace
from tests.broken.cli_cases import cli_cases
from tests.broken.core_cases import core_cases
from tests.broken.data_cases import data_cases
from tests.broken.recipe_cases import recipe_cases
from tests.broken.run_dir_cases import run_dir_cases
from tests.broken.support import dump_toml, review_rows, tiny_recipe, write_jsonl

CASES: list[Case] = recipe_cases(load_registry()) + data_cases() + run_dir_cases() + cli_cases() + core_cases()
RUNNER = CliRunner()
# A few cases also run as real processes: the in-process runner must not hide what a user's terminal would show.
REAL_PROCESSES = {"cli-predict-latin1-file", "data-latin1-byte-csv", "recipe-adapter_fusion-latin1", "core-failed-plugin-named"}
for _case in CASES:
    _case.subprocess = _case.subprocess or _case.id in REAL_PROCESSES


def test_corpus_covers_every_kind_of_input() -> None:
    kinds = Counter(case.id.split("-")[0] for case in CASES)
    assert len(CASES) >= 150 and len({case.id for case in CASES}) == len(CASES)
    assert REAL_PROCESSES <= {case.id for case in CASES}
    assert {"recipe", "data", "rundir", "cli"} <= set(kinds) and min(kinds[k] for k in ("recipe", "data", "rundir", "cli")) >= 20, kinds


@pytest.mark.parametrize("case", [case.param() for case in CASES])
def test_broken_input_exits_2_naming_file_and_place(case: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    ws = Workspace(tmp_path, request)
    argv, fragments = case.build(ws)
    if case.subprocess:
        env = {**os.environ, "COLUMNS": "250", **ws.env}
        done = subprocess.run([sys.executable, "-m", "mtkit", *argv], check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        code, stderr, escaped = done.returncode, done.stderr, None
    else:
        result = RUNNER.invoke(app, argv)
        code, stderr = result.exit_code, result.stderr
        escaped = result.exception if not isinstance(result.exception, SystemExit | type(None)) else None
    assert escaped is None, f"an exception escaped: {escaped!r}"
    assert code == 2, f"exit code {code}:\n{stderr}"
    assert "Traceback" not in stderr
    missing = [fragment for fragment in fragments if fragment not in stderr]
    assert not missing, f"the message lacks {missing}:\n{stderr}"


def test_resume_mid_phase_prints_no_scheduler_warning(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "reviews.jsonl", review_rows())
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(dump_toml(tiny_recipe({"type": "json", "data_files": str(data)}, tmp_path / "run", steps=4, checkpoint_every=2)), encoding="utf-8")
    assert RUNNER.invoke(app, ["run", str(recipe)]).exit_code == 0
    # As if killed after step 3: the latest checkpoint is the one of step 2, mid-phase.
    (tmp_path / "run" / "checkpoints" / "latest").write_text("step-0000002\n", encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = RUNNER.invoke(app, ["run", str(recipe), "--resume"])
    assert result.exit_code == 0, result.output
    assert not [w for w in caught if "lr_scheduler" in str(w.message)]
