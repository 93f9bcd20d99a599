"""What the combiners that read a LoRA library's weights share: an adapter's LoRA factors, or a clear error."""

from __future__ import annotations

from torch import Tensor

from mtkit import LoraFactors, MtkitError


def lora_factors(adapter: object, site: str, name: str, combiner: str, fix: str) -> tuple[Tensor, Tensor, float]:
    """(A (R, Din), B (Dout, R), scale) of adapter `name` at `site`; an MtkitError ending in `fix` for an adapter
    without LoRA factors, whose weights `combiner` cannot read."""
    if not isinstance(adapter, LoraFactors):
        raise MtkitError(
            f"combiner {combiner!r} reads LoRA weights, but adapter {name!r} ({getattr(adapter, 'name', type(adapter).__name__)}) "
            f"has no LoRA factors; {fix}"
        )
    return adapter.lora_factors(site)
