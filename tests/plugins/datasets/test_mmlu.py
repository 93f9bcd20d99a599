"""The packaged MMLU in its three formats, and the subject-group mapping."""

from __future__ import annotations

from collections import Counter

import pytest
from mtkit_datasets.config import MMLU_GROUPS, MmluDatasetConfig
from mtkit_datasets.mmlu import SUBJECT_GROUPS, MmluDataset

from mtkit import MtkitError


def test_mmlu_subject_groups_cover_the_57_subjects() -> None:
    assert len(SUBJECT_GROUPS) == 57
    assert Counter(SUBJECT_GROUPS.values()) == {"STEM": 18, "humanities": 13, "social sciences": 12, "other": 14}
    assert SUBJECT_GROUPS["anatomy"] == "other"  # Hendrycks et al.: anatomy -> health -> other


def test_mmlu_multiple_choice_format() -> None:
    source = MmluDataset(MmluDatasetConfig())
    rows = source.load()["train"]
    assert len(rows) == 14042  # 14,044 lines minus the two repeated header rows
    assert len({s for s in rows["subject"]}) == 57 and set(SUBJECT_GROUPS) == set(rows["subject"])
    row = rows[0]
    assert set(row) == {"question", "choices", "label", "subject"} and len(row["choices"]) == 4
    assert row["choices"][row["label"]] == "Not wrong, Not wrong"  # the file's first row: correct_answer D
    assert source.label_names == ["A", "B", "C", "D"]


def test_mmlu_generation_format_has_prompt_and_target() -> None:
    rows = MmluDataset(MmluDatasetConfig(format="generation", subjects=["astronomy"])).load()["train"]
    assert len(rows) == 152 and set(rows.column_names) == {"prompt", "target", "question", "subject"}
    prompt = rows[0]["prompt"]
    assert prompt.startswith(rows[0]["question"].strip()) and "\nA. " in prompt and "\nD. " in prompt and prompt.endswith("\nAnswer:")
    assert set(rows["target"]) <= {"A", "B", "C", "D"}
    texts = MmluDataset(MmluDatasetConfig(format="generation", answer_format="text", subjects=["astronomy"])).load()["train"]
    assert all(f"{letter}. {text}" in p for letter, text, p in zip(rows["target"], texts["target"], texts["prompt"], strict=True))


def test_mmlu_subject_group_format_labels_by_group() -> None:
    source = MmluDataset(MmluDatasetConfig(format="subject_group", subjects=["virology", "high school physics", "philosophy"]))
    rows = source.load()["train"]
    assert source.label_names == list(MMLU_GROUPS)
    groups = {s: source.label_names[l] for s, l in zip(rows["subject"], rows["label"], strict=True)}
    assert groups == {"virology": "other", "high_school_physics": "STEM", "philosophy": "humanities"}


def test_mmlu_unknown_subject_is_an_error() -> None:
    with pytest.raises(MtkitError, match=r"subjects: 'astrology' not MMLU subjects \(known: abstract_algebra"):
        MmluDataset(MmluDatasetConfig(subjects=["astrology"])).load()
