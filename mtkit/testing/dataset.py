"""Contract checks for dataset sources: load() gives a DatasetDict with a non-empty `train` split."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtkit.testing._common import check_config

__all__ = ["check_dataset"]


def check_dataset(cls: type, params: Mapping[str, Any]) -> None:
    """Check a dataset class with `params` (point it at a small file if it reads one)."""
    import datasets

    from mtkit.api.config import DatasetConfig

    config = check_config(cls, "dataset", params)
    assert isinstance(config, DatasetConfig), f"{cls.config_class.__name__} must subclass mtkit.DatasetConfig"
    source = cls(config)
    loaded = source.load()
    assert isinstance(loaded, datasets.DatasetDict), f"load() returned {type(loaded).__name__}, not datasets.DatasetDict"
    assert "train" in loaded, f"load() has splits {sorted(loaded)}, no `train`"
    assert len(loaded["train"]) > 0, "the train split is empty"
    unknown = sorted(set(loaded) - {"train", "validation", "test"})
    assert not unknown, f"unexpected splits {unknown} (mtkit reads train, and test if present)"
    labels = source.label_names
    if labels is not None:
        assert isinstance(labels, list) and labels and all(isinstance(n, str) for n in labels), f"label_names = {labels!r}"
        assert len(set(labels)) == len(labels), f"label_names repeat a name: {labels!r}"
        if "label" in loaded["train"].column_names:
            values = set(loaded["train"]["label"])
            assert values <= set(range(len(labels))), f"labels {sorted(values)[:5]} fall outside label_names' 0-{len(labels) - 1}"
