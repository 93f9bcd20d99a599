"""Built-in task heads."""

from __future__ import annotations

from mtkit import Register, hookimpl

from .config import ClassificationHeadConfig, LmHeadConfig

MTKIT_PLUGIN_API = 1


@hookimpl
def mtkit_register_components(register: Register) -> None:
    register("mtkit_heads.classification:ClassificationHead", kind="head", name="classification", config=ClassificationHeadConfig)
    register("mtkit_heads.lm:LmHead", kind="head", name="lm", config=LmHeadConfig)
