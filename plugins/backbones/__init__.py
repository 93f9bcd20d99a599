"""Built-in backbones."""

from __future__ import annotations

from mtkit import Register, hookimpl

from .config import HfCausalLmBackboneConfig, HfEncoderBackboneConfig, ScratchTransformerBackboneConfig

MTKIT_PLUGIN_API = 2


@hookimpl
def mtkit_register_components(register: Register) -> None:
    register("mtkit_backbones.hf_encoder:HfEncoderBackbone", kind="backbone", name="hf_encoder", config=HfEncoderBackboneConfig)
    register("mtkit_backbones.hf_causal_lm:HfCausalLmBackbone", kind="backbone", name="hf_causal_lm", config=HfCausalLmBackboneConfig)
    register(
        "mtkit_backbones.scratch_transformer:ScratchTransformerBackbone",
        kind="backbone",
        name="scratch_transformer",
        config=ScratchTransformerBackboneConfig,
    )
