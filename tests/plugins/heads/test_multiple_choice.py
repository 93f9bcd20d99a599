"""The multiple-choice head: flattening choices into rows, masking padded choices, predictions, row checks."""

from __future__ import annotations

from typing import Any

import torch
from mtkit_combiners.config import OracleCombinerConfig
from mtkit_combiners.oracle import OracleCombiner
from mtkit_heads.config import MultipleChoiceHeadConfig
from mtkit_heads.multiple_choice import MultipleChoiceHead

from mtkit import CombinerSetup, TaskInfo
from mtkit.model.multitask import MultiTaskModel
from tests.plugins.components_support import tiny_bert  # noqa: F401  (fixture)

EXAMPLES = {
    "question": ["Which is a fruit?", "Capital of France?"],
    "choices": [["apple", "car", "stone"], ["Paris", "Rome", "Oslo", "Bern"]],
    "label": [0, 0],
}


def _head(backbone: Any, **config: Any) -> MultipleChoiceHead:
    torch.manual_seed(0)
    return MultipleChoiceHead(MultipleChoiceHeadConfig(**config), backbone=backbone, task=TaskInfo("mc", 0, ("A", "B", "C", "D"))).eval()


def test_multiple_choice_collate_flattens_choices_and_masks_padding(tiny_bert: Any) -> None:
    head = _head(tiny_bert)
    encoded = head.encode(EXAMPLES, tiny_bert.tokenizer, 32)
    assert [len(c) for c in encoded["choice_input_ids"]] == [3, 4]
    batch = head.collate(encoded, tiny_bert.tokenizer)
    assert batch["input_ids"].shape[0] == 8  # 2 questions x 4 choices (the first padded with one dummy row)
    assert batch["choice_mask"].tolist() == [[True, True, True, False], [True, True, True, True]]
    first = tiny_bert.tokenizer.decode(batch["input_ids"][1], skip_special_tokens=True)
    assert first == "which is a fruit? car"


def test_multiple_choice_forward_scores_each_choice_and_ignores_padding(tiny_bert: Any) -> None:
    head = _head(tiny_bert, pooling="attention", layer_norm=True)
    batch = head.collate(head.encode(EXAMPLES, tiny_bert.tokenizer, 32), tiny_bert.tokenizer)
    with torch.no_grad():
        out = head(tiny_bert(batch["input_ids"], batch["attention_mask"]), batch)
    assert out.logits.shape == (2, 4) and out.logits[0, 3] < -1e30 and torch.isfinite(out.loss)
    assert out.loss > 0
    # Each row's score depends only on its own pair: scoring the second question alone gives the same logits.
    single = head.collate(head.encode({k: v[1:] for k, v in EXAMPLES.items()}, tiny_bert.tokenizer, 32), tiny_bert.tokenizer)
    with torch.no_grad():
        alone = head(tiny_bert(single["input_ids"], single["attention_mask"]), single).logits
    torch.testing.assert_close(alone[0], out.logits[1], atol=1e-4, rtol=1e-4)


def test_multiple_choice_predict_through_model_returns_choice_indices(tiny_bert: Any) -> None:
    head = _head(tiny_bert)
    setup = CombinerSetup(adapter_names=(), task_names=("mc",), sites={}, hidden_size=32)
    oracle = OracleCombiner(OracleCombinerConfig(), setup=setup)
    model = MultiTaskModel(tiny_bert, {}, {"oracle": oracle}, {"mc": head}, {"mc": None}, active="oracle")
    batch = head.collate(head.encode(EXAMPLES, tiny_bert.tokenizer, 32), tiny_bert.tokenizer)
    with torch.no_grad():
        predictions = head.predict(model.for_task("mc"), batch)
        _, outputs = model([("mc", batch)])
    assert len(predictions) == 2 and predictions[0] in (0, 1, 2) and predictions[1] in (0, 1, 2, 3)
    assert predictions == outputs["mc"].logits.argmax(-1).tolist() and head.references(batch) == [0, 0]


def test_multiple_choice_validate_example_names_the_problem(tiny_bert: Any) -> None:
    head = _head(tiny_bert, num_choices=4)
    good = {"question": "q", "choices": ["a", "b", "c", "d"], "label": 3}
    assert head.validate_example(good) is None
    assert "field 'choices' is missing" in head.validate_example({"question": "q", "label": 0})
    assert "has 3 choices but head.num_choices is 4" in head.validate_example({**good, "choices": ["a", "b", "c"]})
    assert "label 4 in field 'label' is not a choice index (0-3)" in head.validate_example({**good, "label": 4})
    assert head.example_from_text("Capital of France? | Paris | Rome") == {"question": "Capital of France?", "choices": ["Paris", "Rome"]}
