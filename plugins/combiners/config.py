"""Configs of the built-in combiners (pydantic only, so listing never imports torch)."""

from __future__ import annotations

from mtkit import ComponentConfig


class OracleCombinerConfig(ComponentConfig):
    """Each sample's task id picks its task's adapter (batches may mix tasks)."""
