"""Built-in metrics."""

from __future__ import annotations

from mtkit import Register, hookimpl

from .config import (
    AccuracyMetricConfig,
    BleuMetricConfig,
    ChrfMetricConfig,
    EntityF1MetricConfig,
    ExactMatchMetricConfig,
    MacroF1MetricConfig,
    PassAtKMetricConfig,
    RougeMetricConfig,
    TokenAccuracyMetricConfig,
    TokenF1MetricConfig,
)

MTKIT_PLUGIN_API = 2


@hookimpl
def mtkit_register_components(register: Register) -> None:
    register("mtkit_metrics.classification:AccuracyMetric", kind="metric", name="accuracy", config=AccuracyMetricConfig)
    register("mtkit_metrics.classification:MacroF1Metric", kind="metric", name="macro_f1", config=MacroF1MetricConfig)
    register("mtkit_metrics.sequence:TokenAccuracyMetric", kind="metric", name="token_accuracy", config=TokenAccuracyMetricConfig)
    register("mtkit_metrics.sequence:EntityF1Metric", kind="metric", name="entity_f1", config=EntityF1MetricConfig)
    register("mtkit_metrics.text:ExactMatchMetric", kind="metric", name="exact_match", config=ExactMatchMetricConfig)
    register("mtkit_metrics.text:TokenF1Metric", kind="metric", name="token_f1", config=TokenF1MetricConfig)
    register("mtkit_metrics.text:BleuMetric", kind="metric", name="bleu", config=BleuMetricConfig)
    register("mtkit_metrics.text:ChrfMetric", kind="metric", name="chrf", config=ChrfMetricConfig)
    register("mtkit_metrics.text:RougeMetric", kind="metric", name="rouge", config=RougeMetricConfig)
    register("mtkit_metrics.code:PassAtKMetric", kind="metric", name="pass_at_k", config=PassAtKMetricConfig)
