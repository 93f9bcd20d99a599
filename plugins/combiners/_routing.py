"""Maths the built-in combiners share: per-task rows, own-adapter biases, top-k weights."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from mtkit import ForwardContext


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


def softmax_top_k(scores: Tensor, k: int, temperature: Tensor | float) -> Tensor:
    """A softmax over each row's k largest scores, each divided by the temperature; zeros elsewhere."""
    top, index = scores.topk(k, dim=-1)
    return torch.zeros_like(scores).scatter(-1, index, (top / temperature).softmax(-1))
