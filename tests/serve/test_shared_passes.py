"""Predicting every task of an input under a learned router: one backbone pass serves every head that reads the same
tokens, and the answers are those of each task predicted on its own."""

from __future__ import annotations

from pathlib import Path

from mtkit.rundir.load import load_run, predict_loaded

TEXTS = ["a warm, funny and moving film", "shares fell sharply as the bank cut its forecast", "the match ended in a draw"]


def backbone_calls(model: object) -> list[int]:
    calls: list[int] = []
    model.backbone.register_forward_hook(lambda module, args, output: calls.append(1))  # type: ignore[attr-defined]
    return calls


def test_predict_every_task_runs_one_backbone_pass_under_a_router(classify_run: Path) -> None:
    loaded = load_run(classify_run)
    tasks = list(loaded.recipe.tasks)
    assert loaded.model.task_independent  # a router on the input embeddings, LoRA adapters
    calls = backbone_calls(loaded.model)
    every = predict_loaded(loaded, TEXTS, [None] * len(TEXTS))
    assert len(calls) == 1, f"{len(calls)} backbone passes for {len(tasks)} heads over the same tokens"
    for task in tasks:
        alone = predict_loaded(loaded, TEXTS, [task] * len(TEXTS))
        for shared, own in zip(every, alone, strict=True):
            assert shared["predictions"][task] == own["predictions"][task]
    assert all(answer["detected_task"] in tasks for answer in every)
    calls.clear()
    assert predict_loaded(loaded, TEXTS, [None] * len(TEXTS), share_passes=False) == every
    assert len(calls) == len(tasks)


def test_predict_every_task_runs_one_pass_per_task_when_routing_reads_task_ids(classify_run: Path) -> None:
    loaded = load_run(classify_run)
    calls = backbone_calls(loaded.model)
    predict_loaded(loaded, TEXTS, [None] * len(TEXTS), routing="oracle")
    assert len(calls) == len(loaded.recipe.tasks)
