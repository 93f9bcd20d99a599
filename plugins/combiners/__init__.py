"""Built-in combiners."""

from __future__ import annotations

from mtkit import Register, hookimpl

from .config import OracleCombinerConfig

MTKIT_PLUGIN_API = 1


@hookimpl
def mtkit_register_components(register: Register) -> None:
    register("mtkit_combiners.oracle:OracleCombiner", kind="combiner", name="oracle", config=OracleCombinerConfig)
