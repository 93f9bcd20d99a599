"""recipes/quickstart.toml as a new user runs it: the real CLI on the packaged model and corpora."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.core.test_cli import mtkit


@pytest.mark.slow
def test_quickstart_reaches_the_issue_targets(tmp_path: Path) -> None:
    result = mtkit("run", str(ROOT / "recipes" / "quickstart.toml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "quickstart"
    scores = json.loads((run / "results.json").read_text())["adapters"]["oracle"]
    assert scores["sentiment"]["accuracy"] >= 0.75, scores
    assert scores["topic"]["accuracy"] >= 0.95, scores
    data = json.loads((run / "data.json").read_text())
    assert data["tasks"]["sentiment"]["test"] == 1000 and data["tasks"]["topic"]["test"] == 223
    for name in ("recipe.json", "report.md", "model.safetensors", "checkpoints/latest", "training_curves.png"):
        assert (run / name).exists(), name
