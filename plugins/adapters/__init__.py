"""Built-in adapters."""

from __future__ import annotations

from mtkit import Register, hookimpl

from .config import LoraAdapterConfig

MTKIT_PLUGIN_API = 1


@hookimpl
def mtkit_register_components(register: Register) -> None:
    register("mtkit_adapters.lora:LoraAdapter", kind="adapter", name="lora", config=LoraAdapterConfig)
