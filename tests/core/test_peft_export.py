"""`mtkit export --format peft|hf`: what PEFT and transformers load without mtkit gives mtkit's outputs.

The run trains on a tiny random BERT saved to disk like a hub model, so PEFT's `AutoPeftModelFor...` finds the
base model the export names.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import AutoPeftModelForSequenceClassification

from mtkit import MtkitError
from mtkit.model.multitask import MultiTaskModel
from mtkit.rundir.export import export_run
from mtkit.rundir.load import load_run
from mtkit.train.run import run_recipe
from tests.conftest import write_toml
from tests.core.test_cli import mtkit
from tests.core.test_peft_import import save_base

FIXTURES = Path(__file__).parents[1] / "fixtures"
TEXTS = ["a gripping, funny film", "dull and far too long, sadly", "ok"]


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run: `sentiment` has a transformers-shaped head (pooling 'pooler'), `topic` a mean-pooled one."""
    root = tmp_path_factory.mktemp("export")
    base = save_base("bert", root / "tiny-bert")
    recipe: dict[str, Any] = {
        "run": {"name": "export", "seed": 0, "batch_size": 8, "eval_batch_size": 16, "max_length": 32, "checkpoint_every": 0, "output_dir": str(root / "run")},
        "backbone": {"type": "hf_encoder", "model": str(base)},
        "adapters": {name: {"type": "lora", "rank": 4, "alpha": 8, "target_modules": ["query", "value"]} for name in ("sentiment", "topic", "tags", "qa")},
        "combiner": {"type": "weighted"},
        "tasks": {
            "sentiment": {
                "dataset": {"type": "rotten_tomatoes", "max_train_examples": 32, "max_eval_examples": 8},
                "head": {"type": "classification", "pooling": "pooler"},
                "metrics": ["accuracy"],
            },
            "topic": {"dataset": {"type": "bbc_news", "max_train_examples": 32, "max_eval_examples": 8}, "head": {"type": "classification"}, "metrics": ["accuracy"]},
            "tags": {
                "dataset": {"type": "json", "data_files": str(FIXTURES / "token_classification.jsonl"), "label_field": "tags", "test_size": 0.1, "split_seed": 1},
                "head": {"type": "token_classification"},
                "metrics": ["token_accuracy"],
            },
            "qa": {
                "dataset": {"type": "json", "data_files": str(FIXTURES / "span_qa.jsonl"), "test_size": 0.05, "split_seed": 1},
                "head": {"type": "span_qa"},
                "metrics": ["accuracy"],
            },
        },
        "phases": [{"name": "adapters", "steps": 3, "train": ["adapters", "heads"], "lr": 5e-2}],
    }
    run_recipe(write_toml(root / "export.toml", recipe))
    return root / "run"


def mtkit_logits(model: MultiTaskModel, task: str = "sentiment") -> torch.Tensor:
    """The task head's logits on TEXTS (span_qa: (B, T, 2) start and end, with no token masked as outside a context)."""
    enc = model.backbone.tokenizer(TEXTS, padding=True, return_tensors="pt")
    index = list(model.heads).index(task)
    every_token = torch.zeros(*enc["input_ids"].shape, 2, dtype=torch.long)
    with torch.no_grad():  # the run's last phase routes by task id, and load_run routes as it did
        output = model.run_backbone(enc["input_ids"], enc["attention_mask"], torch.full((len(TEXTS),), index))
        return model.heads[task](output, {"attention_mask": enc["attention_mask"], "context_offsets": every_token}).logits  # type: ignore[return-value]


@pytest.mark.slow
def test_export_peft_loads_in_auto_peft_model_with_mtkit_logits_and_round_trips(exported_run: Path, tmp_path: Path) -> None:
    folders = export_run(exported_run, tmp_path / "peft")
    assert sorted(folders) == ["qa", "sentiment", "tags", "topic"]
    config = json.loads((folders["sentiment"] / "adapter_config.json").read_text())
    assert (config["task_type"], config["modules_to_save"]) == ("SEQ_CLS", ["classifier", "pooler"])
    readme = (folders["sentiment"] / "README.md").read_text()
    digest = __import__("hashlib").sha256((exported_run / "manifest.json").read_bytes()).hexdigest()
    assert "AutoPeftModelForSequenceClassification.from_pretrained" in readme and digest in readme and "0 `rotten`, 1 `fresh`" in readme
    assert "The task head is not in this folder: head pooling 'mean'" in (folders["topic"] / "README.md").read_text()
    combiner = json.loads((tmp_path / "peft" / "combiner.json").read_text())
    assert combiner["combiner"] == "weighted" and combiner["mtkit_specific"] is True

    model = load_run(exported_run).model
    ours = mtkit_logits(model)
    peft_model = AutoPeftModelForSequenceClassification.from_pretrained(str(folders["sentiment"])).eval()
    enc = model.backbone.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        theirs = peft_model(**enc).logits
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    with torch.no_grad():
        base = peft_model.get_base_model()
        with peft_model.disable_adapter():
            unadapted = base(**enc).logits
    assert (unadapted - theirs).abs().max() > 1e-4  # the LoRA and head matter

    # Round trip: the PEFT folder imported back into mtkit predicts exactly what the run does.
    recipe = json.loads((exported_run / "recipe.json").read_text())
    back = copy.deepcopy(recipe)
    back.pop("adapters")
    back["libraries"] = {"lib": {"type": "lora", "from_peft": str(tmp_path / "peft")}}
    for other in ("topic", "tags", "qa"):
        back["tasks"].pop(other)
    back["combiner"] = {"type": "oracle"}
    from mtkit import TaskInfo, load_registry
    from mtkit.model.build import build_model
    from mtkit.recipe.resolve import resolve

    imported = build_model(resolve(back, load_registry(), "back.toml"), {"sentiment": TaskInfo("sentiment", 0, ("rotten", "fresh"))}).eval()
    again = mtkit_logits(imported)
    torch.testing.assert_close(again, ours, atol=1e-6, rtol=0)
    assert again.argmax(-1).tolist() == ours.argmax(-1).tolist()

    # Token classification and extractive QA: PEFT's own task types, heads in modules_to_save.
    from peft import AutoPeftModelForQuestionAnswering, AutoPeftModelForTokenClassification

    assert f"num_labels={model.heads['tags'].num_labels})" in (folders["tags"] / "README.md").read_text()
    tags = AutoPeftModelForTokenClassification.from_pretrained(str(folders["tags"]), num_labels=model.heads["tags"].num_labels).eval()
    qa = AutoPeftModelForQuestionAnswering.from_pretrained(str(folders["qa"])).eval()
    with torch.no_grad():
        torch.testing.assert_close(tags(**enc).logits, mtkit_logits(model, "tags"), atol=1e-5, rtol=0)
        spans, out = mtkit_logits(model, "qa"), qa(**enc)
    torch.testing.assert_close(torch.stack([out.start_logits, out.end_logits], -1), spans, atol=1e-5, rtol=0)


def site_packages_without(tmp_path: Path, hidden: tuple[str, ...]) -> Path:
    """A folder of links to every installed top-level package except `hidden` ones (and editable-install hooks)."""
    view = tmp_path / "site"
    view.mkdir()
    for entry in sys.path:
        folder = Path(entry)
        if folder.name not in ("site-packages", "dist-packages") or not folder.is_dir():
            continue
        for item in folder.iterdir():
            name = item.name.lower()
            if name.startswith(hidden) or name.startswith("__editable__") or name.endswith(".pth") or (view / item.name).exists():
                continue
            (view / item.name).symlink_to(item)
    return view


HF_ONLY = """
import importlib.util, json, sys
sys.path.append(sys.argv[1])
assert importlib.util.find_spec("mtkit") is None and importlib.util.find_spec("peft") is None, "mtkit or peft is importable"
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model = AutoModelForSequenceClassification.from_pretrained(sys.argv[2]).eval()
tokenizer = AutoTokenizer.from_pretrained(sys.argv[2])
with torch.no_grad():
    logits = model(**tokenizer(json.loads(sys.argv[3]), padding=True, return_tensors="pt")).logits
print(json.dumps({"logits": logits.tolist(), "labels": model.config.id2label}))
"""


@pytest.mark.slow
def test_export_hf_loads_with_transformers_alone_and_gives_mtkit_logits(exported_run: Path, tmp_path: Path) -> None:
    with pytest.raises(MtkitError, match=r"task 'topic' cannot be written as a transformers model: head pooling 'mean'"):
        export_run(exported_run, tmp_path / "hf", "hf")
    assert not (tmp_path / "hf").exists()  # every task is checked before any is written
    done = mtkit("export", str(exported_run), str(tmp_path / "hf"), "--format", "hf", "--adapter", "sentiment", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    from transformers import AutoModelForQuestionAnswering, AutoModelForTokenClassification

    export_run(exported_run, tmp_path / "hf", "hf", ["tags", "qa"])
    model = load_run(exported_run).model
    enc = model.backbone.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        tags = AutoModelForTokenClassification.from_pretrained(str(tmp_path / "hf" / "tags")).eval()(**enc).logits
        qa = AutoModelForQuestionAnswering.from_pretrained(str(tmp_path / "hf" / "qa")).eval()(**enc)
    torch.testing.assert_close(tags, mtkit_logits(model, "tags"), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.stack([qa.start_logits, qa.end_logits], -1), mtkit_logits(model, "qa"), atol=1e-5, rtol=0)
    folder = tmp_path / "hf" / "sentiment"
    assert "AutoModelForSequenceClassification.from_pretrained" in (folder / "README.md").read_text()
    view = site_packages_without(tmp_path, ("mtkit", "peft"))
    # -I: no PYTHONPATH, user site or script folder; -S: no site-packages and no .pth hooks (editable installs).
    run = subprocess.run(
        [sys.executable, "-I", "-S", "-c", HF_ONLY, str(view), str(folder), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    ours = mtkit_logits(model)
    torch.testing.assert_close(torch.tensor(result["logits"]), ours, atol=1e-5, rtol=0)
    assert result["labels"] == {"0": "rotten", "1": "fresh"}


@pytest.mark.slow
def test_export_causal_lm_loads_in_auto_peft_model_and_as_merged_model(tmp_path: Path) -> None:
    """An lm task on a tiny Llama: PEFT's CAUSAL_LM folder (what vLLM, SGLang and LoRAX load) and the merged model."""
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    base = save_base("llama", tmp_path / "tiny-llama")
    head = {"type": "lm", "prompt_template": "Article: {text} Headline:", "target_template": " {headline}", "max_new_tokens": 2}
    recipe: dict[str, Any] = {
        "run": {"name": "lm", "seed": 0, "batch_size": 2, "max_length": 48, "checkpoint_every": 0, "output_dir": str(tmp_path / "run")},
        "backbone": {"type": "hf_causal_lm", "model": str(base)},
        "adapters": {"news": {"type": "lora", "rank": 4, "init": "random", "target_modules": ["q_proj", "v_proj"]}},
        "tasks": {"news": {"dataset": {"type": "bbc_headlines", "max_train_examples": 4, "max_eval_examples": 2}, "head": head, "metrics": ["rouge"]}},
        "phases": [{"name": "train", "steps": 2, "train": ["adapters"], "lr": 1e-2}],
    }
    run_recipe(write_toml(tmp_path / "lm.toml", recipe))
    peft_folder = export_run(tmp_path / "run", tmp_path / "peft")["news"]
    hf_folder = export_run(tmp_path / "run", tmp_path / "hf", "hf")["news"]
    assert json.loads((peft_folder / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"
    assert "AutoPeftModelForCausalLM.from_pretrained" in (peft_folder / "README.md").read_text()

    model = load_run(tmp_path / "run").model
    enc = model.backbone.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = model.run_backbone(enc["input_ids"], enc["attention_mask"], torch.zeros(len(TEXTS), dtype=torch.long)).logits
        theirs = AutoPeftModelForCausalLM.from_pretrained(str(peft_folder)).eval()(**enc).logits
        merged = AutoModelForCausalLM.from_pretrained(str(hf_folder)).eval()(**enc).logits
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    torch.testing.assert_close(merged, ours, atol=1e-5, rtol=0)
