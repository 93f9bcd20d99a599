"""Configs of the built-in metrics (pydantic only, so listing never imports torch)."""

from __future__ import annotations

from mtkit import ComponentConfig


class AccuracyMetricConfig(ComponentConfig):
    """Share of predictions equal to their reference."""


class MacroF1MetricConfig(ComponentConfig):
    """F1 per class, averaged over the classes seen in references or predictions."""


class TokenAccuracyMetricConfig(ComponentConfig):
    """Share of words whose predicted tag equals the gold tag, over all words (for label sequences)."""


class EntityF1MetricConfig(ComponentConfig):
    """Micro F1 over entity spans decoded from BIO tag sequences (B-X starts, I-X continues; seqeval-style, strict)."""
