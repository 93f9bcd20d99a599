"""Each evaluated example's prediction, reference and routing, saved next to the scores (`predictions/<phase>/<task>.jsonl`;
the comparisons scored after the last phase, oracle routing and the `base` backbone, in `predictions/<phase>/<routing>/`).

A BLEU or ROUGE figure can then be read, not only trusted, and the routing weights recorded for an input in
evaluation can be compared with what `mtkit predict` gives for it. A generative task's rows also carry the prompt
exactly as the model read it (template, chat markup and any cut applied).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

from mtkit.rundir.evaluate import TaskEvaluation

__all__ = ["prediction_rows", "write_predictions"]

_ENCODED = {"input_ids", "attention_mask", "labels", "prompt_ids", "token_type_ids"}


def _named(value: Any, labels: Sequence[str] | None) -> Any:
    return labels[value] if labels and isinstance(value, int) and 0 <= value < len(labels) else value


def prediction_rows(
    examples: datasets.Dataset, evaluation: TaskEvaluation, labels: Sequence[str] | None, adapters: Sequence[str], tokenizer: Any = None
) -> list[dict[str, Any]]:
    """One row per evaluated example: its text fields, the prompt (generative tasks, decoded by `tokenizer`), the
    reference, the prediction and (learned routing) its routing."""
    text_columns = [c for c, f in examples.features.items() if c not in _ENCODED and isinstance(f, datasets.Value) and f.dtype in ("string", "large_string")]
    routing = evaluation.routing
    aligned = routing is not None and len(routing) == len(evaluation.predictions)
    prompts = examples["prompt_ids"] if tokenizer is not None and "prompt_ids" in examples.column_names else None
    rows = []
    for i, (prediction, reference) in enumerate(zip(evaluation.predictions, evaluation.references, strict=True)):
        row: dict[str, Any] = {"input": {c: examples[i][c] for c in text_columns}}
        if prompts is not None:
            row["prompt"] = tokenizer.decode(prompts[i])
        row["reference"], row["prediction"] = _named(reference, labels), _named(prediction, labels)
        if aligned:
            assert routing is not None
            row["routing"] = {a: round(float(w), 6) for a, w in zip(adapters, routing[i].tolist(), strict=True)}
        rows.append(row)
    return rows


def write_predictions(folder: Path, task: str, rows: list[dict[str, Any]]) -> None:
    """`folder/<task>.jsonl`, written atomically."""
    import json
    import os

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{task}.jsonl"
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, target)
