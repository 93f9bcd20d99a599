"""The one finished run the broken-input corpus shares: a tiny random model trained for two steps, built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.broken.support import dump_toml, review_rows, tiny_recipe, write_jsonl


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run directory (never modify it; cases copy it)."""
    import datasets

    from mtkit.train.run import run_recipe

    datasets.disable_progress_bars()
    root = tmp_path_factory.mktemp("finished")
    data = write_jsonl(root / "reviews.jsonl", review_rows())
    recipe = root / "tiny.toml"
    recipe.write_text(dump_toml(tiny_recipe({"type": "json", "data_files": str(data)}, root / "run")), encoding="utf-8")
    return run_recipe(recipe).path
