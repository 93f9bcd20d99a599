"""Built-in task heads."""

from __future__ import annotations

from mtkit import Register, hookimpl

from .config import (
    ClassificationHeadConfig,
    LmHeadConfig,
    MultipleChoiceHeadConfig,
    SpanQaHeadConfig,
    TokenClassificationHeadConfig,
)

MTKIT_PLUGIN_API = 2


@hookimpl
def mtkit_register_components(register: Register) -> None:
    register("mtkit_heads.classification:ClassificationHead", kind="head", name="classification", config=ClassificationHeadConfig)
    register("mtkit_heads.multiple_choice:MultipleChoiceHead", kind="head", name="multiple_choice", config=MultipleChoiceHeadConfig)
    register("mtkit_heads.span_qa:SpanQaHead", kind="head", name="span_qa", config=SpanQaHeadConfig)
    register(
        "mtkit_heads.token_classification:TokenClassificationHead",
        kind="head",
        name="token_classification",
        config=TokenClassificationHeadConfig,
    )
    register("mtkit_heads.lm:LmHead", kind="head", name="lm", config=LmHeadConfig)
