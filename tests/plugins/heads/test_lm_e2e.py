"""End to end on the real SmolLM2-135M-Instruct: LoRA training beats the base model (slow, CPU).

Each run evaluates the base model first (phase `base`: evaluation only, on a zero-initialised
LoRA, i.e. the untrained model), then trains the LoRA and evaluates again with the same prompts,
greedy decoding and held-out examples.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def run_cli(recipe: str, out: Path, *overrides: str) -> dict:
    command = [sys.executable, "-m", "mtkit", "run", str(ROOT / "recipes" / recipe), "--set", f"run.output_dir={out}"]
    for item in overrides:
        command += ["--set", item]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=1800, check=False)  # generous: shared CI machines are slow
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_lm_e2e_lora_improves_headline_rouge(tmp_path: Path) -> None:
    results = run_cli("headlines.toml", tmp_path / "headlines")
    base, trained = results["base"]["oracle"]["headline"], results["lora"]["oracle"]["headline"]
    print(f"headlines ROUGE-L base {base['rougeL']:.4f} -> LoRA {trained['rougeL']:.4f}")
    assert trained["rougeL"] > base["rougeL"]


@pytest.mark.slow
def test_lm_e2e_lora_improves_translation_bleu(tmp_path: Path) -> None:
    results = run_cli("translation.toml", tmp_path / "translation")
    base, trained = results["base"]["oracle"]["translate"], results["lora"]["oracle"]["translate"]
    print(f"en->fr BLEU base {base['bleu']:.2f} -> LoRA {trained['bleu']:.2f}; chrF {base['chrf']:.2f} -> {trained['chrf']:.2f}")
    assert trained["bleu"] > base["bleu"]
