"""Libraries: one recipe table declares many saved LoRAs (a directory of PEFT folders or a glob), each an adapter."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import BertConfig, BertModel

from mtkit import MtkitError, RecipeError, Registry
from mtkit.model.build import build_model
from mtkit.recipe.resolve import resolve
from mtkit.rundir.load import load_run
from mtkit.train.run import run_recipe
from tests.conftest import write_toml
from tests.core.test_cli import mtkit
from tests.plugins.combiners.peft_library import TASKS, save_library


@pytest.fixture()
def library(tmp_path: Path) -> Path:
    save_library(tmp_path / "lib", {"t0": 8.0, "t1": 4.0, "t2": 12.0})
    return tmp_path / "lib"


def _recipe(tiny_recipe: dict[str, Any], from_peft: str, **params: Any) -> dict[str, Any]:
    recipe = copy.deepcopy(tiny_recipe)
    recipe.pop("adapters")
    recipe["libraries"] = {"lib": {"type": "lora", "from_peft": from_peft, **params}}
    return recipe


def test_library_makes_each_folder_an_adapter_named_after_it(library: Path, tiny_recipe: dict[str, Any], registry: Registry) -> None:
    recipe = _recipe(tiny_recipe, str(library), dropout=0.1)
    resolved = resolve(recipe, registry, "r.toml")
    assert list(resolved.recipe.adapters) == ["t0", "t1", "t2"]
    node = resolved.adapters()["t1"]
    assert (node.type, node.config.from_peft, node.config.dropout, node.where) == ("lora", str(library / "t1"), 0.1, "libraries.lib")  # type: ignore[attr-defined]
    assert node.config.target_modules == [f"encoder.layer.{i}.attention.self.{m}" for i in (0, 1) for m in ("query", "value")]  # type: ignore[attr-defined]
    assert resolved.raw == recipe and "adapters" not in resolved.raw  # the run records the library table as written
    model = build_model(resolved, dict(TASKS))
    saved = load_file(str(library / "t1" / "adapter_model.safetensors"))
    a, b, scale = model.adapters["t1"].lora_factors("model.encoder.layer.1.attention.self.value")
    torch.testing.assert_close(a, saved["base_model.model.encoder.layer.1.attention.self.value.lora_A.weight"])
    torch.testing.assert_close(b, saved["base_model.model.encoder.layer.1.attention.self.value.lora_B.weight"])
    assert scale == 4.0 / 4
    glob = resolve(_recipe(tiny_recipe, str(library / "t[02]")), registry, "r.toml")
    assert list(glob.recipe.adapters) == ["t0", "t2"]


def test_library_errors_name_the_file_the_table_and_the_folder(library: Path, tmp_path: Path, tiny_recipe: dict[str, Any], registry: Registry) -> None:
    def problems(recipe: dict[str, Any]) -> str:
        with pytest.raises(RecipeError) as info:
            resolve(recipe, registry, "r.toml")
        return "\n".join(info.value.problems)

    (tmp_path / "empty").mkdir()
    assert f"r.toml: libraries.lib: from_peft '{tmp_path / 'nope'}': '{tmp_path / 'nope'}' is not a directory" in problems(_recipe(tiny_recipe, str(tmp_path / "nope")))
    assert "holds no PEFT LoRA folder (a subfolder with adapter_config.json)" in problems(_recipe(tiny_recipe, str(tmp_path / "empty")))
    assert "the pattern" in problems(_recipe(tiny_recipe, str(tmp_path / "empty" / "*"))) and "matches no folder" in problems(_recipe(tiny_recipe, str(tmp_path / "empty" / "*")))
    assert "is itself one PEFT adapter" in problems(_recipe(tiny_recipe, str(library / "t0")))
    shutil.copytree(library / "t0", tmp_path / "bad" / "my-lora")
    assert "folder" in (text := problems(_recipe(tiny_recipe, str(tmp_path / "bad")))) and "('my-lora' is not a Python identifier); rename the folder" in text
    (library / "t2" / "adapter_model.safetensors").rename(tmp_path / "moved.safetensors")
    assert f"r.toml: libraries.lib: from_peft '{library}': folder '{library / 't2'}': no adapter_model.safetensors there" in problems(_recipe(tiny_recipe, str(library)))
    (tmp_path / "moved.safetensors").rename(library / "t2" / "adapter_model.safetensors")
    clash = _recipe(tiny_recipe, str(library))
    clash["adapters"] = {"t1": {"type": "lora"}}
    assert "r.toml: libraries.lib: its adapter 't1' clashes with adapters.t1, which defines 't1' too" in problems(clash)
    bottleneck = _recipe(tiny_recipe, str(library))
    bottleneck["libraries"]["lib"] = {"type": "bottleneck"}
    assert "r.toml: libraries.lib.type: adapter type 'bottleneck' cannot import a library of saved adapters (types that can: lora)" in problems(bottleneck)
    bad_params = problems(_recipe(tiny_recipe, str(library), dropout=2.0))
    assert bad_params.count("dropout") == 1 and "r.toml: libraries.lib.dropout: input should be less than 1" in bad_params


def _peft_folder(root: Path, model: Any, targets: list[str]) -> None:
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=targets))
    peft_model.save_pretrained(root)


def test_library_built_on_another_model_fails_naming_the_folder_and_what_differs(tmp_path: Path, tiny_recipe: dict[str, Any], registry: Registry) -> None:
    wide = BertModel(BertConfig(vocab_size=100, hidden_size=48, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64))
    _peft_folder(tmp_path / "wide" / "w0", wide, ["query", "value"])
    resolved = resolve(_recipe(tiny_recipe, str(tmp_path / "wide")), registry, "r.toml")
    with pytest.raises(MtkitError, match=r"^r\.toml: libraries\.lib: from_peft '.*w0': model\.encoder\.layer\.0\.attention\.self\.query has A \(4, 48\), B \(48, 4\) but the backbone's Linear is 32->32 at rank 4"):
        build_model(resolved, dict(TASKS))
    deep = BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64))
    _peft_folder(tmp_path / "deep" / "d0", deep, ["query"])
    resolved = resolve(_recipe(tiny_recipe, str(tmp_path / "deep")), registry, "r.toml")
    with pytest.raises(MtkitError, match=r"^r\.toml: libraries\.lib\.target_modules: from_peft '.*d0': the PEFT adapter holds modules that no selected site of the backbone ends with \(missing \['encoder\.layer\.2\.attention\.self\.query'\]\)"):
        build_model(resolved, dict(TASKS))


@pytest.mark.slow
def test_export_then_a_library_recipe_that_only_evaluates_scores_every_task(
    tmp_path: Path, tiny_recipe: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Train a tiny run, `mtkit export` it, and score a recipe that imports the export and trains nothing (the CLI)."""
    source = copy.deepcopy(tiny_recipe)
    source["run"]["output_dir"] = str(tmp_path / "source")
    # Only the adapters train, so the heads stay at their seeded start, which the library recipe starts from too:
    # then the two runs must score alike.
    source["phases"] = [{"name": "adapters", "steps": 4, "train": ["adapters"], "lr": 5e-2}]
    done = mtkit("run", str(write_toml(tmp_path / "source.toml", source)), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = mtkit("export", str(tmp_path / "source"), str(tmp_path / "lib"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "lib").iterdir()) == ["sentiment", "topic"]

    composed = _recipe(tiny_recipe, "lib")  # relative to where mtkit runs
    composed["run"]["output_dir"] = str(tmp_path / "composed")
    composed["phases"] = [{"name": "score", "steps": 0}]
    done = mtkit("run", str(write_toml(tmp_path / "composed.toml", composed)), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    theirs = json.loads((tmp_path / "source" / "results.json").read_text())["adapters"]["oracle"]
    ours = json.loads((tmp_path / "composed" / "results.json").read_text())["score"]["oracle"]
    assert set(ours) == {"sentiment", "topic"} and ours == theirs
    assert json.loads((tmp_path / "composed" / "recipe.json").read_text())["libraries"] == composed["libraries"]
    assert json.loads((tmp_path / "composed" / "parameters.json").read_text())["trained"] == 0
    again = mtkit("eval", str(tmp_path / "composed"), "--json", cwd=tmp_path)  # the run reloads: the library expands again
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == ours
    # Scores of tiny random heads say little; the outputs say it all: the same model, adapters included.
    monkeypatch.chdir(tmp_path)  # where the library's relative path points
    trained, imported = load_run(tmp_path / "source").model, load_run(tmp_path / "composed").model
    assert trained.adapter_names == imported.adapter_names == ["sentiment", "topic"]
    enc = trained.backbone.tokenizer(["a gripping, funny film", "shares fell on monday"], padding=True, return_tensors="pt")
    tasks = torch.tensor([0, 1])
    with torch.no_grad():
        expected = trained.run_backbone(enc["input_ids"], enc["attention_mask"], tasks).hidden
        with trained.adapters_disabled():
            base = trained.run_backbone(enc["input_ids"], enc["attention_mask"], tasks).hidden
        torch.testing.assert_close(imported.run_backbone(enc["input_ids"], enc["attention_mask"], tasks).hidden, expected, atol=1e-6, rtol=0)
    assert (expected - base).abs().max() > 1e-3

    # A learned combiner over the imported library trains only itself (and here the heads): the LoRAs stay as saved.
    learned = _recipe(tiny_recipe, str(tmp_path / "lib"))
    learned["run"]["output_dir"] = str(tmp_path / "learned")
    learned["combiner"] = {"type": "weighted"}
    learned["phases"] = [{"name": "combine", "steps": 3, "train": ["combiner", "heads"], "lr": 5e-2, "routing": "learned", "batching": "mixed"}]
    run_recipe(write_toml(tmp_path / "learned.toml", learned))
    model = load_run(tmp_path / "learned").model
    assert model.combiner.logits.abs().max() > 0
    for name in ("sentiment", "topic"):
        saved = load_file(str(tmp_path / "lib" / name / "adapter_model.safetensors"))
        for site in model.adapters[name].site_names:
            a, b, _ = model.adapters[name].lora_factors(site)
            torch.testing.assert_close(a, saved[f"base_model.{site}.lora_A.weight"], atol=0, rtol=0)
            torch.testing.assert_close(b, saved[f"base_model.{site}.lora_B.weight"], atol=0, rtol=0)
