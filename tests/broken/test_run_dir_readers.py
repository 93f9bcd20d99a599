"""The readers of a finished run: an untouched run passes its manifest, and --no-verify lets a deliberate edit through."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from mtkit.cli.app import app
from mtkit.rundir.manifest import RUN_FILES

RUNNER = CliRunner()


def test_finished_run_has_a_manifest_and_passes_predict_eval_export(finished_run: Path, tmp_path: Path) -> None:
    files = json.loads((finished_run / "manifest.json").read_text(encoding="utf-8"))["files"]
    assert {"recipe.json", "tasks.json", "data.json", "model.safetensors", "results.json"} <= set(files) <= set(RUN_FILES)
    for argv in (["predict", str(finished_run), "a warm film", "--json"], ["eval", str(finished_run)], ["export", str(finished_run), str(tmp_path / "out")]):
        result = RUNNER.invoke(app, argv)
        assert result.exit_code == 0, (argv, result.output)
    assert (tmp_path / "out" / "reviews" / "adapter_config.json").is_file()


def test_no_verify_reads_a_deliberately_edited_run(finished_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", ".lock"))
    before = json.loads(RUNNER.invoke(app, ["predict", str(run), "a warm film", "--json"]).stdout)[0]["predictions"]["reviews"]["prediction"]
    tasks = run / "tasks.json"
    tasks.write_text(json.dumps({"reviews": {"labels": ["bad", "good"]}}, indent=2) + "\n", encoding="utf-8")  # renamed on purpose
    refused = RUNNER.invoke(app, ["predict", str(run), "a warm film"])
    assert refused.exit_code == 2 and f"{tasks}: " in refused.stderr and "--no-verify" in refused.stderr
    edited = RUNNER.invoke(app, ["predict", str(run), "a warm film", "--json", "--no-verify"])
    assert edited.exit_code == 0, edited.output
    assert json.loads(edited.stdout)[0]["predictions"]["reviews"]["prediction"] == {"neg": "bad", "pos": "good"}[before]
