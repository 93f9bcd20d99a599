"""Prediction rows keep each example's text fields, whatever string type the dataset stores them in."""

from __future__ import annotations

import datasets

from mtkit.rundir.evaluate import TaskEvaluation
from mtkit.rundir.predictions import prediction_rows


def test_prediction_rows_keep_large_string_text_columns() -> None:
    # CSV files (Rotten Tomatoes among them) load their text as large_string
    features = datasets.Features({"text": datasets.Value("large_string"), "label": datasets.ClassLabel(names=["rotten", "fresh"])})
    examples = datasets.Dataset.from_dict({"text": ["a gripping film", "dull"], "label": [1, 0]}, features=features)
    rows = prediction_rows(examples, TaskEvaluation({}, [1, 1], [1, 0]), ["rotten", "fresh"], ["sentiment"])
    assert [r["input"] for r in rows] == [{"text": "a gripping film"}, {"text": "dull"}]
    assert [(r["reference"], r["prediction"]) for r in rows] == [("fresh", "fresh"), ("rotten", "fresh")]
