"""Composing adapters in their inner space, given their factored form (`LowRank`).

Three ways to apply K factored adapters at a site, each exact:
- `mix`: dense weights (B, K) or (B, T, K) scale each adapter's inner units, then one output product: K adapters
  cost about one adapter of rank sum(R_k), whatever the weights;
- `gathered_mix`: sparse per-sample weights (a few adapters per sample out of a large library): each sample's
  adapters are gathered and applied with batched products, so the cost grows with the adapters a sample uses,
  not with the library;
- `stack`: every adapter's delta, (B, T, K, Dout), for combiners that need them materialised.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mtkit.adapter import LowRank

__all__ = ["gathered_mix", "inner", "mix", "rank_weights", "stack"]


def _source(factors: LowRank, x: Tensor, y: Tensor) -> Tensor:
    return x if factors.reads == "input" else y


def inner(factors: LowRank, x: Tensor, y: Tensor, *, training: bool) -> Tensor:
    """Every adapter's inner activations, concatenated.  -> (B, T, sum R)

    While training, each adapter with dropout draws its own mask over z, as K separate adapters would.
    """
    z = _source(factors, x, y)
    biases = factors.down_bias
    drops = list(factors.dropout or [0.0] * len(factors.down))
    if training and any(p > 0 for p in drops):
        pieces = [
            F.linear(F.dropout(z, p, True) if p > 0 else z, down.to(z.dtype), None if biases is None else biases[k].to(z.dtype))
            for k, (down, p) in enumerate(zip(factors.down, drops, strict=True))
        ]
        h = torch.cat(pieces, dim=-1) if len(pieces) > 1 else pieces[0]
    else:
        weight = torch.cat(list(factors.down)) if len(factors.down) > 1 else factors.down[0]
        bias = None if biases is None else (torch.cat(list(biases)) if len(biases) > 1 else biases[0])
        h = F.linear(z, weight.to(z.dtype), None if bias is None else bias.to(z.dtype))
    return factors.activation(h) if factors.activation is not None else h


def rank_weights(weights: Tensor, ranks: Sequence[int]) -> Tensor:
    """Per-adapter weights (B, K) or (B, T, K) repeated over each adapter's inner units -> (B, 1, sum R) or (B, T, sum R)."""
    if len(ranks) == 1:
        w = weights
    else:
        repeats = torch.tensor(list(ranks), device=weights.device)
        w = weights.repeat_interleave(repeats, dim=-1, output_size=sum(ranks))
    return w.unsqueeze(1) if w.dim() == 2 else w


def _bias(weights: Tensor, up_bias: Sequence[Tensor], dtype: torch.dtype) -> Tensor:
    bias = weights.to(dtype) @ torch.stack(list(up_bias)).to(dtype)  # (B, Dout) or (B, T, Dout)
    return bias.unsqueeze(1) if bias.dim() == 2 else bias


def mix(factors: LowRank, x: Tensor, y: Tensor, weights: Tensor, *, training: bool) -> Tensor:
    """sum_k w_k delta_k for dense weights (B, K) or (B, T, K), in the inner space.  -> (B, T, Dout)"""
    h = inner(factors, x, y, training=training)
    h = h * rank_weights(weights.to(h.dtype), factors.ranks)
    up = torch.cat(list(factors.up)) if len(factors.up) > 1 else factors.up[0]  # (sum R, Dout)
    out = h @ up.to(h.dtype)
    if factors.up_bias is not None:
        out = out + _bias(weights, factors.up_bias, out.dtype)
    return out


def stack(factors: LowRank, x: Tensor, y: Tensor, *, training: bool) -> Tensor:
    """Every adapter's delta.  -> (B, T, K, Dout)"""
    h = inner(factors, x, y, training=training)
    ranks = factors.ranks
    if len(set(ranks)) == 1:
        k, r = len(ranks), ranks[0]
        deltas = torch.einsum("btkr,kro->btko", h.unflatten(-1, (k, r)), torch.stack(list(factors.up)).to(h.dtype))
    else:
        deltas = torch.stack([piece @ up.to(h.dtype) for piece, up in zip(h.split(ranks, dim=-1), factors.up, strict=True)], dim=2)
    if factors.up_bias is not None:
        deltas = deltas + torch.stack(list(factors.up_bias)).to(deltas.dtype)
    return deltas


def _padded(matrices: Sequence[Tensor], rank: int) -> Tensor:
    """(R_k, D) matrices zero-padded to `rank` rows and stacked -> (K, rank, D)."""
    return torch.stack([m if m.shape[0] == rank else F.pad(m, (0, 0, 0, rank - m.shape[0])) for m in matrices])


def gathered_mix(factors: LowRank, x: Tensor, y: Tensor, weights: Tensor, per_sample: int) -> Tensor:
    """sum_k w_k delta_k for per-sample weights (B, K) with at most `per_sample` non-zero entries a row.

    Each sample's adapters are gathered (zero-padded to one rank; padded units stay zero since act(0) = 0) and
    applied with batched products, so the work grows with `per_sample`, not with K. No dropout: used where the
    family trains without it, or in evaluation.  -> (B, T, Dout)
    """
    z = _source(factors, x, y)
    top_w, top_i = weights.topk(per_sample, dim=-1)  # (B, k): zero weights among them contribute nothing
    used, slot = top_i.unique(return_inverse=True)  # only the library's adapters some sample uses are stacked
    columns = used.tolist()
    rank = max(factors.ranks[c] for c in columns)
    down = _padded([factors.down[c] for c in columns], rank)[slot]  # (B, k, R, Din)
    up = _padded([factors.up[c] for c in columns], rank)[slot]  # (B, k, R, Dout)
    h = torch.bmm(z, down.flatten(1, 2).transpose(1, 2).to(z.dtype))  # (B, T, k R)
    if factors.down_bias is not None:
        bias = torch.stack([F.pad(factors.down_bias[c], (0, rank - factors.down_bias[c].shape[0])) for c in columns])[slot]
        h = h + bias.flatten(1, 2).unsqueeze(1).to(h.dtype)
    if factors.activation is not None:
        h = factors.activation(h)
    h = h * top_w.to(h.dtype).repeat_interleave(rank, dim=-1).unsqueeze(1)
    out = torch.bmm(h, up.flatten(1, 2).to(h.dtype))  # (B, T, Dout)
    if factors.up_bias is not None:
        up_bias = torch.stack([factors.up_bias[c] for c in columns])[slot]  # (B, k, Dout)
        out = out + torch.einsum("bk,bko->bo", top_w.to(out.dtype), up_bias.to(out.dtype)).unsqueeze(1)
    return out
