"""Built-in adapters: lora, bottleneck (Houlsby/Pfeiffer) and hyper_lora."""

from __future__ import annotations

from mtkit import Register, hookimpl

from .config import BottleneckAdapterConfig, HyperLoraAdapterConfig, LoraAdapterConfig

MTKIT_PLUGIN_API = 2


@hookimpl
def mtkit_register_components(register: Register) -> None:
    register("mtkit_adapters.lora:LoraAdapter", kind="adapter", name="lora", config=LoraAdapterConfig)
    register("mtkit_adapters.bottleneck:BottleneckAdapter", kind="adapter", name="bottleneck", config=BottleneckAdapterConfig)
    register("mtkit_adapters.hyper_lora:HyperLoraAdapter", kind="adapter", name="hyper_lora", config=HyperLoraAdapterConfig)
