"""The lm head on a tiny random Llama with SmolLM2's real tokenizer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import datasets
import pytest
import torch

from mtkit import MtkitError
from mtkit.data.tasks import prepare_task_data
from mtkit.model.multitask import MultiTaskModel

from .conftest import ROWS, InMemoryDataset

MakeLm = Callable[..., MultiTaskModel]


def encode(model: MultiTaskModel, rows: dict[str, list[Any]], max_length: int = 48) -> dict[str, list[Any]]:
    return model.heads["news"].encode(rows, model.backbone.tokenizer, max_length)


def test_lm_encode_masks_prompt_and_appends_eos(make_lm: MakeLm) -> None:
    model = make_lm()
    tok = model.backbone.tokenizer
    enc = encode(model, ROWS)
    for i, text in enumerate(ROWS["text"]):
        prompt = tok(f"Article: {text}\nHeadline:")["input_ids"]
        answer = tok(" " + ROWS["headline"][i], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert enc["prompt_ids"][i] == prompt
        assert enc["input_ids"][i] == prompt + answer
        assert enc["labels"][i] == [-100] * len(prompt) + answer
        assert enc["reference"][i] == ROWS["headline"][i]


def test_lm_loss_counts_answer_tokens_only(make_lm: MakeLm) -> None:
    model = make_lm()
    head = model.heads["news"]
    tok = model.backbone.tokenizer
    batch = head.collate(encode(model, ROWS), tok)
    loss = model([("news", batch)])[0]["news"]
    # Reference: mean over answer tokens of -log p(token | everything before it), each row run alone.
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(len(ROWS["text"])):
            mask = batch["attention_mask"][i].bool()
            ids, labels = batch["input_ids"][i][mask][None], batch["labels"][i][mask]
            logits = model.run_backbone(ids, torch.ones_like(ids), torch.tensor([0])).logits[0]
            logp = logits.float().log_softmax(-1)
            for t in range(1, len(labels)):
                if labels[t] != -100:
                    total -= float(logp[t - 1, labels[t]])
                    count += 1
    answer_tokens = sum(len(tok(" " + h, add_special_tokens=False)["input_ids"]) + 1 for h in ROWS["headline"])
    assert count == answer_tokens
    assert float(loss.detach()) == pytest.approx(total / count, rel=1e-5)


def test_lm_loss_changes_when_prompt_tokens_are_labelled(make_lm: MakeLm) -> None:
    """Masked positions add nothing: relabelling prompt tokens as -100 vs their ids changes the loss."""
    model = make_lm()
    head = model.heads["news"]
    batch = head.collate(encode(model, ROWS), model.backbone.tokenizer)
    masked = float(model([("news", batch)])[0]["news"].detach())
    full = dict(batch, labels=torch.where(batch["attention_mask"].bool(), batch["input_ids"], -100))
    assert float(model([("news", full)])[0]["news"].detach()) != pytest.approx(masked)


def test_lm_truncation_keeps_prompt_tail_and_answer(make_lm: MakeLm) -> None:
    model = make_lm()
    tok = model.backbone.tokenizer
    rows = {"text": ["word " * 200], "headline": ["Short title"]}
    enc = encode(model, rows, max_length=32)
    assert len(enc["input_ids"][0]) <= 32
    tail = tok("\nHeadline:", add_special_tokens=False)["input_ids"]
    prompt = enc["prompt_ids"][0]
    assert tok.decode(prompt).endswith("\nHeadline:"), tok.decode(prompt[-len(tail) :])
    answer = tok(" Short title", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert enc["input_ids"][0][-len(answer) :] == answer


def test_lm_chat_template_renders_user_turn(make_lm: MakeLm) -> None:
    model = make_lm(chat_template=True, system_prompt="Write headlines.")
    head = model.heads["news"]
    text = head.render_prompt({"text": "Body", "headline": "x"})
    assert text.startswith("<|im_start|>system\nWrite headlines.<|im_end|>")
    assert text.endswith("Article: Body\nHeadline:<|im_end|>\n<|im_start|>assistant\n")
    enc = encode(model, {"text": ["word " * 200], "headline": ["t"]}, max_length=40)
    assert model.backbone.tokenizer.decode(enc["prompt_ids"][0]).endswith("<|im_start|>assistant\n")


def test_lm_predict_batched_left_padding_matches_each_row_alone(make_lm: MakeLm) -> None:
    model = make_lm(max_new_tokens=5)
    head = model.heads["news"]
    tok = model.backbone.tokenizer
    rows = {
        "text": ["A short one.", "A much longer article body that needs padding in a batch of two rows."],
        "headline": ["a", "b"],
    }
    batch = head.collate(encode(model, rows), tok)
    assert batch["prompt_attention_mask"][0, 0] == 0 and batch["prompt_attention_mask"][0, -1] == 1  # left-padded
    together = head.predict(model.for_task("news"), batch)
    alone = []
    for i in range(2):
        one = head.collate(encode(model, {k: v[i : i + 1] for k, v in rows.items()}), tok)
        alone += head.predict(model.for_task("news"), one)
    assert together == alone
    assert all(isinstance(t, str) for t in together)


def test_lm_predict_sampling_returns_num_samples_per_row(make_lm: MakeLm) -> None:
    model = make_lm(do_sample=True, num_samples=3, max_new_tokens=3)
    head = model.heads["news"]
    batch = head.collate(encode(model, ROWS), model.backbone.tokenizer)
    predictions = head.predict(model.for_task("news"), batch)
    assert len(predictions) == 2 and all(len(p) == 3 and all(isinstance(s, str) for s in p) for p in predictions)


def test_lm_stop_strings_cut_predictions(make_lm: MakeLm) -> None:
    head = make_lm(stop=["\n", "###"]).heads["news"]
    assert head.clean(" Title one\nmore text") == "Title one"
    assert head.clean("abc### def") == "abc"


def test_lm_reference_fields_make_dict_references(make_lm: MakeLm) -> None:
    model = make_lm(reference_fields=["text"])
    batch = model.heads["news"].collate(encode(model, ROWS), model.backbone.tokenizer)
    assert model.heads["news"].references(batch) == [
        {"target": h, "text": t} for h, t in zip(ROWS["headline"], ROWS["text"], strict=True)
    ]


def test_lm_num_samples_without_sampling_is_rejected(make_lm: MakeLm) -> None:
    with pytest.raises(Exception, match="do_sample"):
        make_lm(num_samples=2)


def test_lm_missing_column_error_names_task_field_and_row(make_lm: MakeLm) -> None:
    model = make_lm()
    source = InMemoryDataset({"text": ["a", "b", "c", "d"], "title": ["w", "x", "y", "z"]})
    with pytest.raises(MtkitError, match=r"task 'news', every row \(\d+ of them\): field 'headline' is missing \(fields: text, title\)"):
        prepare_task_data("news", source, source.load(), model.heads["news"], model.backbone.tokenizer, 32)


def test_lm_empty_value_error_names_row(make_lm: MakeLm) -> None:
    model = make_lm()
    rows = {"text": ["a", "b", "c", "d"], "headline": ["w", "x", None, "z"]}
    source = InMemoryDataset(rows, None)
    loaded = source.load()
    with pytest.raises(MtkitError, match=r"task 'news', (train|test) row \d: field 'headline' is empty"):
        prepare_task_data("news", source, loaded, model.heads["news"], model.backbone.tokenizer, 32)


def test_lm_empty_split_error_names_task(make_lm: MakeLm) -> None:
    model = make_lm()
    from mtkit import DatasetConfig

    source = InMemoryDataset({"text": ["a", "b", "c"], "headline": ["x", "y", "z"]}, DatasetConfig(test_size=0.5))

    class WithEmptyTest(InMemoryDataset):
        def load(self) -> datasets.DatasetDict:
            train = datasets.Dataset.from_dict(self.rows)
            return datasets.DatasetDict({"train": train, "test": train.select([])})

    source = WithEmptyTest(source.rows)
    with pytest.raises(MtkitError, match=r"task 'news': the test split of dataset 'in_memory' is empty"):
        prepare_task_data("news", source, source.load(), model.heads["news"], model.backbone.tokenizer, 32)


def test_lm_head_rejects_encoder_backbone(registry: Any) -> None:
    from mtkit import TaskInfo
    from mtkit.model.build import build_model
    from mtkit.recipe.resolve import resolve
    from tests.conftest import TINY_BERT

    from .conftest import lm_recipe

    recipe = lm_recipe()
    recipe["backbone"] = dict(TINY_BERT)
    recipe["adapters"]["news"]["target_modules"] = ["query"]
    resolved = resolve(recipe, registry, "test")
    with pytest.raises(MtkitError, match="needs a generative backbone"):
        build_model(resolved, {"news": TaskInfo("news", 0)})


def test_lm_humaneval_references_feed_pass_at_k(make_lm: MakeLm) -> None:
    """Dataset -> lm head references (dicts) -> pass_at_k: the canonical solutions all pass."""
    from mtkit_datasets.config import HumanEvalDatasetConfig
    from mtkit_datasets.text2text import HumanEvalDataset
    from mtkit_metrics.code import PassAtKMetric
    from mtkit_metrics.config import PassAtKMetricConfig

    model = make_lm(
        prompt_template="{prompt}", target_template="{canonical_solution}", reference_fields=["prompt", "test", "entry_point"]
    )
    head = model.heads["news"]
    rows = HumanEvalDataset(HumanEvalDatasetConfig()).load()["train"].select(range(6))
    assert all(head.validate_example(r) is None for r in rows)
    batch = head.collate(head.encode(rows[:], model.backbone.tokenizer, 1024), model.backbone.tokenizer)
    references = head.references(batch)
    assert [r["entry_point"] for r in references] == rows["entry_point"]
    metric = PassAtKMetric(PassAtKMetricConfig(allow_code_execution=True, timeout=10))
    assert metric.compute(rows["canonical_solution"], references) == {"pass_at_1": 1.0}
    assert metric.compute(["    pass\n"] * 6, references) == {"pass_at_1": 0.0}


def test_lm_new_inputs_without_answers_encode_and_predict(make_lm: MakeLm) -> None:
    """`mtkit predict` hands the head bare texts: no labels, no references, still generation."""
    model = make_lm()
    head = model.heads["news"]
    example = head.example_from_text("Some new article.")
    assert example == {"text": "Some new article."}
    enc = encode(model, {"text": [example["text"]]})
    assert "labels" not in enc and "reference" not in enc
    batch = head.collate(enc, model.backbone.tokenizer)
    assert len(head.predict(model.for_task("news"), batch)) == 1
    with pytest.raises(MtkitError, match="no answer field headline"):
        head.references(batch)
