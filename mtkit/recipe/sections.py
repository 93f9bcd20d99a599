"""What every recipe table model shares: strict sections, component tables, identifiers and routing labels."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BASE_ROUTING", "ID_PATTERN", "LEARNED_ROUTING", "ORACLE_ROUTING", "ROUTINGS", "ComponentTable", "Section"]

ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

ORACLE_ROUTING = "oracle"
"""`phases.N.routing` (and the label of its results) when task ids pick the adapters: the oracle combiner runs."""
LEARNED_ROUTING = "learned"
"""`phases.N.routing` (and the label of its results) when the recipe's combiner decides."""
ROUTINGS = (ORACLE_ROUTING, LEARNED_ROUTING)
BASE_ROUTING = "base"
"""The label of the reference evaluation without any adapter (the backbone alone, same prompts and metrics): never a
phase's routing, scored after a generative run and by `mtkit eval --routing base`."""


class Section(BaseModel):
    """A recipe table: unknown keys and non-finite numbers are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ComponentTable(BaseModel):
    """A component: its registered `type` and its params side by side."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str = Field(description="Registered name of the component (see `mtkit list-components`).")
