"""Contract checks for heads: encode -> collate -> forward on a tiny backbone -> loss and predictions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mtkit.testing._common import check_config, check_state_dict_round_trip
from mtkit.testing._tiny import SAMPLE_TEXTS, tiny_backbone

__all__ = ["DEFAULT_EXAMPLES", "DEFAULT_LABEL_NAMES", "check_head"]

DEFAULT_EXAMPLES: dict[str, list[Any]] = {"text": list(SAMPLE_TEXTS), "label": [1, 0, 1, 0]}
"""Classification-style raw examples (a `datasets.map(batched=True)` batch)."""
DEFAULT_LABEL_NAMES = ("negative", "positive")


class _Access:
    """The ModelAccess a head's predict() receives, over a bare backbone."""

    def __init__(self, backbone: Any) -> None:
        self.backbone = backbone

    def backbone_output(self, batch: Mapping[str, Any]) -> Any:
        return self.backbone(batch["input_ids"], batch["attention_mask"])

    def generate(self, batch: Mapping[str, Any], **kwargs: Any) -> Any:
        return self.backbone.generate(batch["input_ids"], batch["attention_mask"], **kwargs)


def check_head(
    cls: type,
    params: Mapping[str, Any],
    *,
    examples: Mapping[str, Sequence[Any]] | None = None,
    label_names: Sequence[str] | None = DEFAULT_LABEL_NAMES,
    backbone: str = "bert",
    max_length: int = 16,
    new_input: str = "a new input",
) -> None:
    """Check a head class with `params` on raw `examples` of its task (`backbone`: `bert` or `llama`).

    `new_input` is a text as `mtkit predict` would pass it (e.g. `question | choice | choice`).
    """
    import torch

    from mtkit.api.interfaces import TaskInfo

    config = check_config(cls, "head", params)
    raw = {k: list(v) for k, v in (examples or DEFAULT_EXAMPLES).items()}
    size = len(next(iter(raw.values())))
    task = TaskInfo("task", 0, tuple(label_names) if label_names is not None else None)

    bb = tiny_backbone(backbone, seed=0)
    bb.requires_grad_(False).eval()  # a random-init HF model starts in train mode (dropout)
    tokenizer = bb.tokenizer

    def make(seed: int) -> Any:
        torch.manual_seed(seed)
        return cls(config, backbone=bb, task=task)

    head = make(0)
    for i in range(size):
        problem = head.validate_example({k: v[i] for k, v in raw.items()})
        assert problem is None, f"validate_example() rejects example {i} of the check's own examples: {problem}"

    encoded = head.encode(raw, tokenizer, max_length)
    assert isinstance(encoded, dict) and encoded, "encode() returned no fields"
    for field, values in encoded.items():
        assert len(values) == size, f"encode() field {field!r} has {len(values)} rows for {size} examples"
    batch = head.collate(encoded, tokenizer)
    missing = [f for f in ("input_ids", "attention_mask") if f not in batch]
    assert not missing, f"collate() gives no {missing}"
    ids = batch["input_ids"]
    # Rows may be examples, or several per example (multiple choice flattens its choices).
    assert ids.dim() == 2 and ids.shape[0] % size == 0, f"collate() input_ids shape {tuple(ids.shape)} for {size} examples"
    assert ids.shape[1] <= max_length, f"encode() ignores max_length={max_length}"

    head.train()
    output = head(bb(ids, batch["attention_mask"]), batch)
    assert output.loss is not None, "forward() gives no loss on a batch with references"
    assert output.loss.dim() == 0 and torch.isfinite(output.loss), f"loss is not a finite scalar: {output.loss}"
    trainable = [(n, p) for n, p in head.named_parameters() if p.requires_grad]
    if trainable:  # a head may have no weights of its own (lm: the backbone's LM head, trained through adapters)
        output.loss.backward()
        assert any(p.grad is not None and torch.any(p.grad != 0) for _, p in trainable), "no gradient reaches the head"

    head.eval()
    with torch.no_grad():
        predictions = head.predict(_Access(bb), batch)
    references = head.references(batch)
    assert isinstance(predictions, list) and isinstance(references, list), "predict() and references() return lists"
    assert len(predictions) == len(references) == size, (
        f"{len(predictions)} predictions and {len(references)} references for {size} examples"
    )

    # Predicting new inputs: example_from_text() must encode without references.
    new = head.example_from_text(new_input)
    new_encoded = head.encode({k: [v] for k, v in new.items()}, tokenizer, max_length)
    new_batch = head.collate(new_encoded, tokenizer)
    with torch.no_grad():
        assert len(head.predict(_Access(bb), new_batch)) == 1, "predict() on one new input gives one prediction"

    def run(h: Any) -> Any:
        out = h(bb(ids, batch["attention_mask"]), batch)
        return out.logits if out.logits is not None else out.loss

    check_state_dict_round_trip(make, run)
