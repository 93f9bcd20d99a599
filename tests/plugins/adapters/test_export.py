"""A LoRA trained by `mtkit run` exports to the PEFT format and PEFT reproduces mtkit's outputs."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from transformers import AutoModel

from mtkit import MtkitError
from mtkit.rundir.export import export_run
from mtkit.rundir.load import load_run
from mtkit.train.run import run_recipe
from tests.conftest import write_toml


@pytest.fixture()
def trained_run(tiny_recipe: dict[str, Any], tmp_path: Path) -> Path:
    recipe = copy.deepcopy(tiny_recipe)
    recipe["run"]["output_dir"] = str(tmp_path / "run")
    recipe["adapters"]["topic"] = {"type": "bottleneck", "bottleneck_dim": 4}  # not exportable to PEFT
    recipe["adapters"]["sentiment"]["dropout"] = 0.1
    recipe["phases"] = [{"name": "adapters", "steps": 4, "train": ["adapters", "heads"], "lr": 2e-2}]
    run_recipe(write_toml(tmp_path / "tiny.toml", recipe))
    return tmp_path / "run"


@pytest.mark.slow
def test_export_run_lora_loads_in_peft_with_same_outputs(trained_run: Path, tmp_path: Path) -> None:
    folders = export_run(trained_run, tmp_path / "export")
    assert list(folders) == ["sentiment"]  # the bottleneck has no PEFT format
    config = json.loads((folders["sentiment"] / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["lora_dropout"]) == (4, 16.0, 0.1)
    model = load_run(trained_run).model
    lora = model.adapters["sentiment"]
    assert any(b.abs().max() > 0 for b in lora.lora_b.values())  # training moved B off zero
    texts = ["a gripping, funny film", "dull and far too long, sadly"]
    enc = model.backbone.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = model.run_backbone(enc["input_ids"], enc["attention_mask"], torch.zeros(2, dtype=torch.long)).hidden
        with model.adapters_disabled():
            base = model.run_backbone(enc["input_ids"], enc["attention_mask"], torch.zeros(2, dtype=torch.long)).hidden
        # A bare copy of the base (a deepcopy would carry mtkit's site hooks along).
        bare = AutoModel.from_config(model.backbone.model.config)
        bare.load_state_dict(model.backbone.model.state_dict())
        peft_model = PeftModel.from_pretrained(bare, str(folders["sentiment"])).eval()
        theirs = peft_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    assert (ours - base).abs().max() > 1e-4
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_export_cli_writes_peft_folder_and_rejects_non_lora(trained_run: Path, tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "mtkit", "export", str(trained_run), str(tmp_path / "out")]
    done = subprocess.run([*cli, "--adapter", "sentiment"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert {p.name for p in (tmp_path / "out" / "sentiment").iterdir()} == {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    done = subprocess.run([*cli, "--adapter", "topic"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "adapter 'topic' (bottleneck) cannot be exported to format 'peft'" in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(MtkitError, match="not an adapter of this run"):
        export_run(trained_run, tmp_path / "x", adapters=["nope"])
