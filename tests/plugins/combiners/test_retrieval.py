"""`retrieval`: adapters described by the mean embedding of their tasks' inputs; a probe set built from those inputs
routes home; weights against a hand-written reference."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from mtkit import FitData, MtkitError

from .conftest import Builder, encode, hidden, recorded, reference_hidden

WORDS = {
    "sentiment": "film actor gripping dull funny plot scene director performance boring".split(),
    "topic": "shares market bank profits minister election economy report rose fell".split(),
    "extra0": "goal match striker league season coach score penalty stadium keeper".split(),
}


def _texts(words: list[str], count: int, seed: int) -> list[str]:
    draw = random.Random(seed)
    return [" ".join(draw.sample(words, 6)) for _ in range(count)]


def _fit_data(model: Any, examples: dict[str, list[str]]) -> FitData:
    """Each adapter's own task is named after it, its training inputs `examples[adapter]`."""

    def batches(task: str, limit: int | None) -> list[tuple[str, dict[str, Any]]]:
        ids, mask = encode(model, examples[task][:limit])
        return [(task, {"input_ids": ids, "attention_mask": mask})]

    def loss(pieces: Any) -> torch.Tensor:
        (_, batch), = pieces
        with model.use_combiner("combiner"):
            return model.run_backbone(batch["input_ids"], batch["attention_mask"], torch.zeros(len(batch["input_ids"]), dtype=torch.long)).hidden.sum()

    return FitData(
        phase="describe", tasks=tuple(examples), adapter_tasks={name: (name,) for name in examples}, seed=0,
        device=torch.device("cpu"), batch_size=8, batches=batches, loss=loss,
    )


@pytest.mark.parametrize("source", ["embeddings", "frozen_pass"])
def test_retrieval_routes_a_probe_set_built_from_the_example_inputs_home(build: Builder, source: str) -> None:
    model = build({"type": "retrieval", "source": source, "examples": 8, "top_k": 1}, adapters=3)
    examples = {name: _texts(words, 8, seed=i) for i, (name, words) in enumerate(WORDS.items())}
    summary = model.combiner.fit(_fit_data(model, examples))
    assert summary["examples"] == {"sentiment": 8, "topic": 8, "extra0": 8}
    # Probes: new draws of four of each adapter's example words, in a new order.
    probes = [(column, text) for column, words in enumerate(WORDS.values()) for text in _texts(words, 5, seed=100 + column)]
    with torch.no_grad():
        hidden(model, torch.zeros(len(probes), dtype=torch.long), texts=[t for _, t in probes])
    chosen = recorded(model)[0].argmax(-1)
    assert chosen.tolist() == [c for c, _ in probes]


def test_retrieval_weights_are_the_softmax_of_the_top_k_cosines(build: Builder) -> None:
    model = build({"type": "retrieval", "source": "embeddings", "top_k": 2, "temperature": 0.5}, adapters=3)
    combiner = model.combiner
    generator = torch.Generator().manual_seed(0)
    descriptions = F.normalize(torch.randn(3, 32, generator=generator), dim=-1)
    combiner.descriptions.copy_(descriptions)
    combiner.described.fill_(True)
    representation = torch.randn(4, 32, generator=generator)
    weights = combiner.route(representation)
    # By hand, per sample: cosines, keep the two largest, softmax of cosine / 0.5.
    for row, r in zip(weights, representation, strict=True):
        cosines = torch.stack([F.cosine_similarity(r, d, dim=0) for d in descriptions])
        kept = cosines.argsort(descending=True)[:2]
        expected = torch.zeros(3)
        expected[kept] = (cosines[kept] / 0.5).softmax(0)
        torch.testing.assert_close(row, expected, atol=1e-6, rtol=1e-6)
    # The model applies exactly these weights at every site (the sample's embedding decides once per pass).
    ids, mask = encode(model)
    with torch.no_grad(), model.use_combiner("combiner"):
        ours = model.run_backbone(ids, mask, torch.zeros(4, dtype=torch.long)).hidden
        decided = combiner.route(model._embedded(ids, mask))
        theirs = reference_hidden(model, ids, mask, lambda site, x: decided)
    assert (decided > 0).sum(-1).eq(2).all()
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_retrieval_needs_an_adapter_with_task_data(build: Builder) -> None:
    model = build({"type": "retrieval"}, adapters=2)
    data = _fit_data(model, {})
    with pytest.raises(MtkitError, match="no adapter serves a task with training examples"):
        model.combiner.fit(data)
