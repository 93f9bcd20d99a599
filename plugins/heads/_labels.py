"""Heads that pick one of a fixed set of labels (classes, choices): how many, the prediction, the reference."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtkit import ComponentConfig, Head, ModelAccess, MtkitError, TaskInfo


def resolve_num_labels(config: ComponentConfig, task: TaskInfo) -> int:
    """`num_labels` if set (it must agree with the dataset), else the dataset's label count."""
    configured: int | None = getattr(config, "num_labels", None)
    labels = len(task.label_names) if task.label_names else None
    if configured is not None and labels is not None and configured != labels:
        raise MtkitError(f"{configured} classes, but the dataset has {labels} labels; remove num_labels or make it match", key="num_labels")
    resolved = configured or labels
    if resolved is None:
        field = getattr(config, "label_field", "label")
        raise MtkitError(
            f"required: the dataset names no labels (it has no field {field!r} of text labels); set num_labels for integer "
            "labels, or point the dataset at the label column (dataset.rename)",
            key="num_labels",
        )
    return resolved


def argmax_predictions(head: Head, model: ModelAccess, batch: Mapping[str, Any]) -> list[Any]:
    """Each example's highest-scoring label index (the labels are left out of the forward pass)."""
    logits = head(model.backbone_output(batch), {k: v for k, v in batch.items() if k != "labels"}).logits
    return logits.argmax(-1).tolist()


def label_references(batch: Mapping[str, Any]) -> list[Any]:
    """Each example's label index."""
    return batch["labels"].tolist()
