"""The pluggy markers and the hook every mtkit plugin implements."""

from __future__ import annotations

from typing import Protocol

from pluggy import HookimplMarker, HookspecMarker

__all__ = ["Register", "hookimpl", "hookspec", "mtkit_register_components"]

hookspec = HookspecMarker("mtkit")
hookimpl = HookimplMarker("mtkit")


class Register(Protocol):
    """The callback handed to `mtkit_register_components`."""

    def __call__(
        self,
        component: type | str,
        *,
        kind: str | None = None,
        name: str | None = None,
        config: type | None = None,
    ) -> None:
        """Register one component.

        Pass the class itself (its `kind`, `name` and `config_class` ClassVars are read), or, so that
        listing never imports torch, a "module:Class" string with `kind`, `name` and `config`.
        """


@hookspec
def mtkit_register_components(register: Register) -> None:
    """Called once per plugin when the registry is built; call `register` once per component.

    Implementations return None and do nothing else: no model loading, no I/O.
    """
