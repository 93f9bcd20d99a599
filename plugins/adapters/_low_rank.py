"""Shared maths: weighting K adapters in their inner (rank or bottleneck) space."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def rank_space_weights(weights: Tensor, scales: Sequence[float], sizes: Sequence[int]) -> Tensor:
    """Per-adapter weights (B, K) or (B, T, K) times scales, repeated over each adapter's inner units.

    -> (B, 1, sum R) or (B, T, sum R), ready to multiply the inner activations (B, T, sum R).
    Because LoRA and bottleneck deltas are linear in their inner activations (a bottleneck's
    non-linearity acts per unit), scaling the units of adapter k by w_k weights its whole delta.
    """
    if len(sizes) == 1:
        w = weights * scales[0]
    else:
        scale = torch.tensor(list(scales), device=weights.device, dtype=weights.dtype)
        repeats = torch.tensor(list(sizes), device=weights.device)
        w = (weights * scale).repeat_interleave(repeats, dim=-1, output_size=sum(sizes))
    return w.unsqueeze(1) if w.dim() == 2 else w
