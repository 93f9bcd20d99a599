"""Errors raised by mtkit and its plugins; only the CLI turns them into messages and exit codes."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MtkitError", "PluginError", "RecipeError", "UnknownComponentError"]


class MtkitError(Exception):
    """A user-facing error: the message says where, what, and what would fix it.

    A component names the offending key of its own config in `key` (``"rank"``, ``"config_overrides.hidden_size"``)
    and leaves the recipe file and the component's place in it to the core, which adds them while building
    (``recipes/x.toml: adapters.topic.rank: ...``). `located` is set once the message names its file.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.located = False

    def locate(self, source: str, path: str | None) -> None:
        """Prefix the message with the recipe file and the full key path (the component's path plus `key`)."""
        if self.located:
            return
        where = ".".join(part for part in (path, self.key) if part)
        message = str(self.args[0]) if self.args else ""
        self.args = (f"{source}: {where}: {message}" if where else f"{source}: {message}",)
        self.located = True


class RecipeError(MtkitError):
    """One or more problems in a recipe, each already prefixed with its file and key path."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
        self.located = True

    def locate(self, source: str, path: str | None) -> None:
        """Each problem already names its file and key path."""


class UnknownComponentError(MtkitError, LookupError):
    """A (kind, name) that no loaded plugin registered."""


class PluginError(MtkitError):
    """A plugin failed to load or broke a registration rule."""

    def __init__(self, plugin: str, message: str, *, key: str | None = None) -> None:
        self.plugin = plugin
        super().__init__(message, key=key)
