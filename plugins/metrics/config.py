"""Configs of the built-in metrics (pydantic only, so listing never imports torch)."""

from __future__ import annotations

from mtkit import ComponentConfig


class AccuracyMetricConfig(ComponentConfig):
    """Share of predictions equal to their reference."""


class MacroF1MetricConfig(ComponentConfig):
    """F1 per class, averaged over the classes seen in references or predictions."""
