"""`retrieval`: adapters described by the mean embedding of their tasks' inputs; a probe set built from those inputs
routes home; weights against a hand-written reference."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from mtkit import FitData, MtkitError
from mtkit.train.fit import forward_texts

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
        forward_texts=lambda texts: forward_texts(model, texts, batch_size=8, max_length=64, device=torch.device("cpu")),
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


def _probes_route_home(model: Any) -> None:
    probes = [(column, text) for column, words in enumerate(WORDS.values()) for text in _texts(words, 5, seed=100 + column)]
    with torch.no_grad():
        hidden(model, torch.zeros(len(probes), dtype=torch.long), texts=[t for _, t in probes])
    assert recorded(model)[0].argmax(-1).tolist() == [c for c, _ in probes]


def test_retrieval_describes_adapters_from_example_files(build: Builder, tmp_path: Path) -> None:
    """A library without tasks: each adapter described by the inputs in its file (blank lines skipped); a probe set
    built from the same words routes home; an adapter with a file ignores its task data."""
    files = {}
    for i, (name, words) in enumerate(WORDS.items()):
        files[name] = tmp_path / f"{name}.txt"
        files[name].write_text("\n\n".join(_texts(words, 6, seed=i)) + "\n", encoding="utf-8")
    model = build({"type": "retrieval", "source": "embeddings", "top_k": 1, "example_files": {n: str(f) for n, f in files.items()}}, adapters=3)
    wrong = {name: _texts(WORDS["topic"], 8, seed=50) for name in WORDS}  # task data that would describe every adapter alike
    summary = model.combiner.fit(_fit_data(model, wrong))
    assert summary["examples"] == {"sentiment": 6, "topic": 6, "extra0": 6}
    assert summary["example_files"] == {n: str(f) for n, f in files.items()}
    _probes_route_home(model)


def test_retrieval_mixes_example_files_and_task_data(build: Builder, tmp_path: Path) -> None:
    path = tmp_path / "extra0.txt"
    path.write_text("\n".join(_texts(WORDS["extra0"], 8, seed=2)), encoding="utf-8")
    model = build({"type": "retrieval", "source": "embeddings", "top_k": 1, "examples": 8, "example_files": {"extra0": str(path)}}, adapters=3)
    examples = {name: _texts(words, 8, seed=i) for i, (name, words) in enumerate(WORDS.items()) if name != "extra0"}
    summary = model.combiner.fit(_fit_data(model, examples))
    assert summary["examples"] == {"sentiment": 8, "topic": 8, "extra0": 8}
    _probes_route_home(model)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "is not a file"), ("\n  \n", "has no example input"), (b"caf\xe9\n", "is not UTF-8 text")],
)
def test_retrieval_example_file_problems_name_the_key(build: Builder, tmp_path: Path, content: str | bytes | None, message: str) -> None:
    """Read when the adapters are described: the error names the key and says what to fix (a run that finished keeps
    its descriptions and reloads without the files)."""
    path = tmp_path / "examples.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    model = build({"type": "retrieval", "source": "embeddings", "example_files": {"topic": str(path)}})
    with pytest.raises(MtkitError, match=rf"combiner\.example_files\.topic: .*{message}"):
        model.combiner.fit(_fit_data(model, {"sentiment": _texts(WORDS["sentiment"], 4, seed=0)}))


def test_retrieval_example_file_for_an_unknown_adapter_is_refused(build: Builder, tmp_path: Path) -> None:
    path = tmp_path / "examples.txt"
    path.write_text("a goal in the last minute\n", encoding="utf-8")
    with pytest.raises(MtkitError, match=r"combiner.example_files: 'sports' is not an adapter of this recipe \(adapters: sentiment, topic\)"):
        build({"type": "retrieval", "example_files": {"sports": str(path)}})
