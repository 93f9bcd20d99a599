"""Maths the built-in combiners share: pooling weights per sample, site averages, sparse groups."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from mtkit import AdapterGroup, ForwardContext, masked_mean


def per_sample(weights: Tensor, mask: Tensor | None) -> Tensor:
    """(B, K) or per-token (B, T, K) weights -> (B, K), averaging over the tokens the mask keeps."""
    return weights if weights.dim() == 2 else masked_mean(weights, mask)


def task_rows(ctx: ForwardContext, device: torch.device) -> Iterator[tuple[int, Tensor]]:
    """(task id, boolean row mask) for each task present in the batch: per-task combiners run each task's copy on its rows."""
    assert ctx.task_ids is not None, "the model always passes task ids"
    task_ids = ctx.task_ids.to(device)
    for task in task_ids.unique().tolist():
        yield task, task_ids == task


def add_own_bias(scores: Tensor, bias: Tensor, own: Tensor) -> Tensor:
    """`own_adapter_init`: scores (B, K) or (B, T, K) plus `bias` ((B,) or a scalar) where own (B, K) marks each sample's own adapter."""
    added = own.to(scores) * (bias[:, None] if bias.dim() else bias)  # (B, K)
    return scores + (added[:, None, :] if scores.dim() == 3 else added)


def add_weighted(site: str, x: Tensor, y: Tensor, groups: Sequence[AdapterGroup], weights: Tensor, ctx: ForwardContext) -> Tensor:
    """y + sum_k w_k delta_k over every group (each group computes its adapters batched)."""
    out = y
    for group in groups:
        out = out + group.mix(site, x, y, weights, ctx)
    return out


def active_groups(groups: Sequence[AdapterGroup], active: set[int]) -> list[AdapterGroup]:
    """The groups restricted to the adapters whose column is in `active` (skip unchosen adapters)."""
    kept = []
    for group in groups:
        pairs = [(a, c) for a, c in zip(group.adapters, group.columns, strict=True) if c in active]
        if pairs:
            kept.append(AdapterGroup(group.cls, [a for a, _ in pairs], [c for _, c in pairs]))
    return kept


def record_site_average(ctx: ForwardContext, key: str, site: str, last_site: str, weights: Tensor) -> None:
    """Accumulate per-sample weights over sites; record their mean once per forward, at the last site.

    Per-site combiners (gating, fusion_attention) decide at every site, so the routing a sample
    receives is summarised as its mean weight over the sites. Combiners record in evaluation mode
    only: training forwards would grow the log for nothing.
    """
    total, count = ctx.cache.get(key, (None, 0))
    weights = weights.detach()
    total = weights if total is None else total + weights
    ctx.cache[key] = (total, count + 1)
    if site == last_site:
        mean = total / (count + 1)
        ctx.record_routing(mean / mean.sum(-1, keepdim=True).clamp_min(1e-12))


def scatter_columns(values: Tensor, columns: Sequence[int], k: int) -> Tensor:
    """(..., len(columns)) -> (..., k) with the values in their columns and zeros elsewhere."""
    out = values.new_zeros(*values.shape[:-1], k)
    out[..., list(columns)] = values
    return out


def site_columns(groups: Sequence[AdapterGroup]) -> list[int]:
    return [c for group in groups for c in group.columns]


def one_hot_top_k(probs: Tensor, k: int) -> Tensor:
    """Equal weights 1/k on the k largest entries of each row."""
    index = probs.topk(k, dim=-1).indices
    return torch.zeros_like(probs).scatter(-1, index, 1.0 / k)


def keep_top_k(probs: Tensor, k: int) -> Tensor:
    """The k largest entries of each row, renormalised to sum to 1; zeros elsewhere."""
    index = probs.topk(k, dim=-1).indices
    mask = torch.zeros_like(probs).scatter(-1, index, 1.0)
    kept = probs * mask
    return kept / kept.sum(-1, keepdim=True).clamp_min(1e-12)
