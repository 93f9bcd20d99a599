"""Errors raised by mtkit and its plugins; only the CLI turns them into messages and exit codes."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MtkitError", "PluginError", "RecipeError", "UnknownComponentError"]


class MtkitError(Exception):
    """A user-facing error: the message says where, what, and what would fix it."""


class RecipeError(MtkitError):
    """One or more problems in a recipe, each already prefixed with its file and key path."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class UnknownComponentError(MtkitError, LookupError):
    """A (kind, name) that no loaded plugin registered."""


class PluginError(MtkitError):
    """A plugin failed to load or broke a registration rule."""

    def __init__(self, plugin: str, message: str) -> None:
        self.plugin = plugin
        super().__init__(message)
