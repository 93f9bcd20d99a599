"""LoRAs trained by PEFT itself, the way its users train them (task models with their heads), import into mtkit.

Each test saves a tiny random base model to disk, trains a LoRA on it with real PEFT for a few steps (so B is off
zero and the head has moved), saves it with `save_pretrained`, imports the folder as a `libraries.<label>` table and
checks that mtkit's outputs equal PEFT's own model within 1e-5.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from mtkit import BackboneOutput, MtkitError, RecipeError, Registry, TaskInfo
from mtkit.model.build import build_model
from mtkit.model.multitask import MultiTaskModel
from mtkit.recipe.resolve import resolve
from mtkit.testing import SAMPLE_TEXTS, tiny_backbone

LABELS = {"sentiment": ("rotten", "fresh"), "tags": ("O", "B", "I"), "qa": (), "embed": ("a", "b"), "chat": ()}
HEADS: dict[str, dict[str, Any]] = {
    "sentiment": {"type": "classification", "pooling": "pooler"},
    "tags": {"type": "token_classification"},
    "qa": {"type": "span_qa"},
    "embed": {"type": "classification"},
    "chat": {"type": "lm"},
}


def save_base(which: str, folder: Path) -> Path:
    """A tiny random model (`bert` encoder or `llama` causal LM) with its real tokenizer, saved like a hub model."""
    backbone = tiny_backbone(which, seed=0)
    backbone.model.save_pretrained(folder)
    backbone.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_base("bert", tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_base("llama", tmp_path_factory.mktemp("tiny-llama"))


def encoded(base: Path) -> dict[str, torch.Tensor]:
    tokenizer = tiny_backbone_tokenizer(base)
    enc = tokenizer(SAMPLE_TEXTS, padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def tiny_backbone_tokenizer(base: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def train_peft(task_model: Any, config: LoraConfig, batch: dict[str, torch.Tensor], loss_of: Any, steps: int = 3) -> Any:
    """`get_peft_model` and a few AdamW steps on `loss_of(outputs)`, as a PEFT user trains; returns the model in eval mode."""
    torch.manual_seed(0)
    peft_model = get_peft_model(task_model, config)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=5e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        loss_of(peft_model(**batch)).backward()
        optimizer.step()
    return peft_model.eval()


def mtkit_model(
    registry: Registry, base: Path, backbone_type: str, library: Path, task: str, lib: dict[str, Any] | None = None, **head: Any
) -> MultiTaskModel:
    """One task served by the adapter of the same name from a `libraries.lib` table over `library` (with `lib` params)."""
    recipe = {
        "backbone": {"type": backbone_type, "model": str(base)},
        "libraries": {"lib": {"type": "lora", "from_peft": str(library), **(lib or {})}},
        "combiner": {"type": "oracle"},
        "tasks": {task: {"dataset": {"type": "rotten_tomatoes"}, "head": {**HEADS[task], **head}}},
        "phases": [{"name": "score", "steps": 0}],
    }
    return build_model(resolve(recipe, registry, "interop.toml"), {task: TaskInfo(task, 0, LABELS[task])}).eval()


def mtkit_outputs(model: MultiTaskModel, task: str, batch: dict[str, torch.Tensor], **extra: Any) -> tuple[BackboneOutput, torch.Tensor | None]:
    with torch.no_grad():
        output = model.run_backbone(batch["input_ids"], batch["attention_mask"], torch.zeros(len(batch["input_ids"]), dtype=torch.long))
        return output, model.heads[task](output, {**batch, **extra}).logits


def seq_cls_folder(base: Path, folder: Path, **lora: Any) -> Any:
    """A SEQ_CLS LoRA with its classifier, trained and saved by PEFT on the base at `base`; returns the PEFT model."""
    batch = encoded(base)
    labels = torch.tensor([1, 0, 1, 0])
    task_model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
    config = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"], **lora)
    peft_model = train_peft(task_model, config, batch, lambda out: torch.nn.functional.cross_entropy(out.logits, labels))
    peft_model.save_pretrained(folder)
    return peft_model


def test_peft_seq_cls_adapter_imports_with_its_classifier(registry: Registry, bert_dir: Path, tmp_path: Path) -> None:
    """The first refusal the issue quotes (`unexpected tensor 'base_model.model.classifier.bias'`) is now an import."""
    peft_model = seq_cls_folder(bert_dir, tmp_path / "lib" / "sentiment")
    saved = json.loads((tmp_path / "lib" / "sentiment" / "adapter_config.json").read_text())
    assert saved["task_type"] == "SEQ_CLS" and "classifier" in saved["modules_to_save"]
    batch = encoded(bert_dir)
    with torch.no_grad():
        theirs = peft_model(**batch).logits
    model = mtkit_model(registry, bert_dir, "hf_encoder", tmp_path / "lib", "sentiment")
    _, ours = mtkit_outputs(model, "sentiment", batch)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    trained = peft_model.base_model.model.classifier.modules_to_save["default"].weight
    assert (trained - peft_model.base_model.model.classifier.original_module.weight).abs().max() > 1e-3  # the head was trained


def test_peft_seq_cls_adapter_without_its_head_maps_the_base_model_prefix(registry: Registry, bert_dir: Path, tmp_path: Path) -> None:
    """The second refusal (modules under `bert.` matching no site) is now an import: the LoRA alone, head stripped."""
    seq_cls_folder(bert_dir, tmp_path / "full" / "embed")
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(tmp_path / "full" / "embed" / "adapter_model.safetensors"))
    assert any(k.startswith("base_model.model.bert.encoder.") for k in tensors)
    (tmp_path / "lib" / "embed").mkdir(parents=True)
    save_file({k: v for k, v in tensors.items() if "lora_" in k}, str(tmp_path / "lib" / "embed" / "adapter_model.safetensors"))
    config = json.loads((tmp_path / "full" / "embed" / "adapter_config.json").read_text()) | {"modules_to_save": None}
    (tmp_path / "lib" / "embed" / "adapter_config.json").write_text(json.dumps(config))
    model = mtkit_model(registry, bert_dir, "hf_encoder", tmp_path / "lib", "embed")
    lora = model.adapters["embed"]
    a, b, _ = lora.lora_factors("model.encoder.layer.1.attention.self.value")
    torch.testing.assert_close(b, tensors["base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight"], atol=0, rtol=0)
    assert b.abs().max() > 0


def test_peft_token_cls_and_question_answering_adapters_import_with_heads(registry: Registry, bert_dir: Path, tmp_path: Path) -> None:
    batch = encoded(bert_dir)
    tags = torch.tensor([[0, 1, 2] * (batch["input_ids"].shape[1] // 3) + [0] * (batch["input_ids"].shape[1] % 3)] * 4)
    token_model = train_peft(
        AutoModelForTokenClassification.from_pretrained(bert_dir, num_labels=3),
        LoraConfig(task_type="TOKEN_CLS", r=4, lora_alpha=8, target_modules=["query", "value"]),
        batch,
        lambda out: torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), tags.flatten()),
    )
    token_model.save_pretrained(tmp_path / "lib" / "tags")
    starts, ends = torch.tensor([1, 2, 1, 1]), torch.tensor([3, 2, 2, 1])
    qa_model = train_peft(
        AutoModelForQuestionAnswering.from_pretrained(bert_dir),
        LoraConfig(task_type="QUESTION_ANS", r=4, lora_alpha=8, target_modules=["query", "value", "dense"]),
        batch,
        lambda out: torch.nn.functional.cross_entropy(out.start_logits, starts) + torch.nn.functional.cross_entropy(out.end_logits, ends),
    )
    qa_model.save_pretrained(tmp_path / "lib" / "qa")
    with torch.no_grad():
        token_logits = token_model(**batch).logits
        qa_out = qa_model(**batch)

    _, ours = mtkit_outputs(mtkit_model(registry, bert_dir, "hf_encoder", tmp_path / "lib", "tags"), "tags", batch)
    torch.testing.assert_close(ours, token_logits, atol=1e-5, rtol=0)
    every_token = torch.zeros(*batch["input_ids"].shape, 2, dtype=torch.long)  # no position masked as outside the context
    _, ours = mtkit_outputs(mtkit_model(registry, bert_dir, "hf_encoder", tmp_path / "lib", "qa"), "qa", batch, context_offsets=every_token)
    assert ours is not None
    torch.testing.assert_close(ours[..., 0], qa_out.start_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours[..., 1], qa_out.end_logits, atol=1e-5, rtol=0)


def test_peft_feature_extraction_and_causal_lm_adapters_import(registry: Registry, bert_dir: Path, llama_dir: Path, tmp_path: Path) -> None:
    batch = encoded(bert_dir)
    encoder = train_peft(
        AutoModel.from_pretrained(bert_dir),
        LoraConfig(task_type="FEATURE_EXTRACTION", r=4, lora_alpha=8, target_modules=["query", "value"]),
        batch,
        lambda out: out.last_hidden_state.pow(2).mean(),
    )
    encoder.save_pretrained(tmp_path / "enc" / "embed")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
    output, _ = mtkit_outputs(mtkit_model(registry, bert_dir, "hf_encoder", tmp_path / "enc", "embed"), "embed", batch)
    torch.testing.assert_close(output.hidden, hidden, atol=1e-5, rtol=0)

    batch = encoded(llama_dir)
    causal = train_peft(
        AutoModelForCausalLM.from_pretrained(llama_dir),
        LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, use_rslora=True, target_modules=["q_proj", "v_proj", "down_proj"]),
        {**batch, "labels": batch["input_ids"]},
        lambda out: out.loss,
    )
    causal.save_pretrained(tmp_path / "lm" / "chat")
    with torch.no_grad():
        logits = causal(**batch).logits
    model = mtkit_model(registry, llama_dir, "hf_causal_lm", tmp_path / "lm", "chat")
    assert model.adapters["chat"].scale == pytest.approx(8 / 2)  # rsLoRA: alpha / sqrt(rank)
    output, _ = mtkit_outputs(model, "chat", batch)
    assert output.logits is not None
    torch.testing.assert_close(output.logits, logits, atol=1e-5, rtol=0)


def test_peft_import_refuses_dora_other_methods_and_mismatches_by_name(registry: Registry, bert_dir: Path, tmp_path: Path) -> None:
    def build_error(library: Path, lib: dict[str, Any] | None = None, **head: Any) -> str:
        with pytest.raises((MtkitError, RecipeError)) as info:
            mtkit_model(registry, bert_dir, "hf_encoder", library, "sentiment", lib, **head)
        return str(info.value) if not isinstance(info.value, RecipeError) else "\n".join(info.value.problems)

    seq_cls_folder(bert_dir, tmp_path / "dora" / "sentiment", use_dora=True)
    assert "holds a DoRA adapter (use_dora = true), whose weight-decomposed update mtkit cannot represent" in build_error(tmp_path / "dora")
    ia3 = get_peft_model(AutoModel.from_pretrained(bert_dir), __import__("peft").IA3Config(target_modules=["query", "value"], feedforward_modules=[]))
    ia3.save_pretrained(tmp_path / "ia3" / "sentiment")
    assert "holds a IA3 adapter (peft_type 'IA3'), which mtkit cannot represent" in build_error(tmp_path / "ia3")

    seq_cls_folder(bert_dir, tmp_path / "lib" / "sentiment")
    message = build_error(tmp_path / "lib", {"rank": 8})
    assert "interop.toml: libraries.lib.rank: 8 differs from the PEFT adapter" in message and "which has 4" in message
    assert "the task's head must be type = 'classification' with pooling = 'pooler'" in build_error(tmp_path / "lib", pooling="mean")
    wide = tmp_path / "wide" / "sentiment"
    seq_cls_folder(bert_dir, wide)
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(wide / "adapter_model.safetensors"))
    tensors["base_model.model.classifier.weight"] = torch.zeros(3, 32)
    tensors["base_model.model.classifier.bias"] = torch.zeros(3)
    save_file(tensors, str(wide / "adapter_model.safetensors"))
    assert "tasks.sentiment.head: 'classifier.weight' has 3 labels but the task has 2 (rotten, fresh)" in build_error(tmp_path / "wide")
    config_file = tmp_path / "lib" / "sentiment" / "adapter_config.json"
    config_file.write_text(json.dumps(json.loads(config_file.read_text()) | {"base_model_name_or_path": "FacebookAI/roberta-base"}))
    assert "adapter_config.json names base model 'FacebookAI/roberta-base' but the backbone is" in build_error(tmp_path / "lib")
