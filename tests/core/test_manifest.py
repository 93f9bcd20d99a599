"""The run manifest: written over the files a run leaves, and every kind of change to them refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtkit import MtkitError
from mtkit.rundir.manifest import MANIFEST, verify_manifest, write_manifest


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.json").write_text(json.dumps({"tasks": {"a": {}}}), encoding="utf-8")
    (run / "tasks.json").write_text(json.dumps({"a": {"labels": ["neg", "pos"]}}), encoding="utf-8")
    (run / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    (run / "metrics.jsonl").write_text("{}\n", encoding="utf-8")  # a log, not covered
    write_manifest(run)
    return run


def test_manifest_records_the_files_predict_and_eval_read(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    files = json.loads((run / MANIFEST).read_text(encoding="utf-8"))["files"]
    assert sorted(files) == ["model.safetensors", "recipe.json", "tasks.json"]
    assert files["model.safetensors"]["bytes"] == 1024 and len(files["model.safetensors"]["sha256"]) == 64
    verify_manifest(run)  # untouched: passes
    (run / "metrics.jsonl").write_text("{}\n{}\n", encoding="utf-8")
    verify_manifest(run)  # logs may grow


def test_manifest_refuses_a_file_changed_in_place(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    (run / "tasks.json").write_text(json.dumps({"a": {"labels": ["pos", "neg"]}}), encoding="utf-8")  # same size, swapped
    with pytest.raises(MtkitError, match=r"tasks.json: does not match its sha256 in manifest.json \(changed after the run finished.*--no-verify"):
        verify_manifest(run)


@pytest.mark.parametrize(("cut", "word"), [(0, "emptied"), (500, "cut short"), (2000, "grown")])
def test_manifest_names_an_emptied_cut_or_grown_file(tmp_path: Path, cut: int, word: str) -> None:
    run = _run_dir(tmp_path)
    data = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes((data * 2)[:cut])
    with pytest.raises(MtkitError, match=rf"model.safetensors: has {cut} bytes where manifest.json records 1024 \({word}"):
        verify_manifest(run)


def test_manifest_names_a_missing_file_and_lists_the_others(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    (run / "recipe.json").unlink()
    (run / "tasks.json").write_text("{}", encoding="utf-8")
    with pytest.raises(MtkitError, match=r"recipe.json: missing, though manifest.json lists it .*\(also: .*tasks.json\)"):
        verify_manifest(run)


def test_manifest_missing_or_damaged_is_refused_with_the_way_out(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    (run / MANIFEST).write_text('{"files": {"recipe.json": 3}}', encoding="utf-8")
    with pytest.raises(MtkitError, match=r"manifest.json: damaged .*--no-verify"):
        verify_manifest(run)
    (run / MANIFEST).unlink()
    with pytest.raises(MtkitError, match=r"has no manifest.json, so its files cannot be checked .*--resume.*--no-verify"):
        verify_manifest(run)
