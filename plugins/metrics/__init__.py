"""Built-in metrics."""

from __future__ import annotations

from mtkit import Register, hookimpl

from .config import AccuracyMetricConfig, EntityF1MetricConfig, MacroF1MetricConfig, TokenAccuracyMetricConfig

MTKIT_PLUGIN_API = 1


@hookimpl
def mtkit_register_components(register: Register) -> None:
    register("mtkit_metrics.classification:AccuracyMetric", kind="metric", name="accuracy", config=AccuracyMetricConfig)
    register("mtkit_metrics.classification:MacroF1Metric", kind="metric", name="macro_f1", config=MacroF1MetricConfig)
    register("mtkit_metrics.sequence:TokenAccuracyMetric", kind="metric", name="token_accuracy", config=TokenAccuracyMetricConfig)
    register("mtkit_metrics.sequence:EntityF1Metric", kind="metric", name="entity_f1", config=EntityF1MetricConfig)
