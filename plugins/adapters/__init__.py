"""Built-in adapters: lora, bottleneck (Houlsby/Pfeiffer), hyper_lora, and the mixtures mixlora and hydra_lora."""

from __future__ import annotations

from mtkit import Register, hookimpl

from .config import (
    BottleneckAdapterConfig,
    HydraLoraAdapterConfig,
    HyperLoraAdapterConfig,
    LoraAdapterConfig,
    MixLoraAdapterConfig,
)

MTKIT_PLUGIN_API = 2


@hookimpl
def mtkit_register_components(register: Register) -> None:
    register("mtkit_adapters.lora:LoraAdapter", kind="adapter", name="lora", config=LoraAdapterConfig)
    register("mtkit_adapters.bottleneck:BottleneckAdapter", kind="adapter", name="bottleneck", config=BottleneckAdapterConfig)
    register("mtkit_adapters.hyper_lora:HyperLoraAdapter", kind="adapter", name="hyper_lora", config=HyperLoraAdapterConfig)
    register("mtkit_adapters.mixlora:MixLoraAdapter", kind="adapter", name="mixlora", config=MixLoraAdapterConfig)
    register("mtkit_adapters.hydra_lora:HydraLoraAdapter", kind="adapter", name="hydra_lora", config=HydraLoraAdapterConfig)
