"""Contract test suites, one module per component kind, for built-ins and third-party plugins.

Plugin authors run the same checks the built-ins pass, e.g. in their own pytest file:

    from mtkit.testing import TINY_BERT
    from mtkit.testing.adapter import check_adapter
    def test_my_adapter(): check_adapter(MyAdapter, {"rank": 4}, backbone=TINY_BERT, nonidentity={"init": "random"})

One function per kind, each `check_<kind>(cls, params, **kind-specific options)`, raising
AssertionError with a message naming what broke:

    mtkit.testing.adapter.check_adapter      mtkit.testing.metric.check_metric
    mtkit.testing.backbone.check_backbone    mtkit.testing.head.check_head
    mtkit.testing.combiner.check_combiner    mtkit.testing.scheduler.check_scheduler
    mtkit.testing.dataset.check_dataset      mtkit.testing.balancer.check_balancer

Tiny random backbones with real tokenizers (TINY_BERT, TINY_LLAMA, tiny_backbone) live in
mtkit.testing._tiny, re-exported here.
"""

from mtkit.testing._tiny import SAMPLE_TEXTS, TINY_BERT, TINY_LLAMA, tiny_backbone, tiny_tokenizer_path

__all__ = ["SAMPLE_TEXTS", "TINY_BERT", "TINY_LLAMA", "tiny_backbone", "tiny_tokenizer_path"]
