"""Composing adapters in their inner space, given their factored form (`LowRank`).

delta_k = h_k U_k + c_k with inner activations h_k = act(z A_k^T + a_k): every delta is linear in h_k, so what a
combiner does with the deltas can be done with the K inner activations and the (small) output matrices:
- `mix`: dense weights (B, K) or (B, T, K) scale each adapter's inner units, then one output product: K adapters
  cost about one adapter of rank sum(R_k), whatever the weights;
- `gathered_mix`: sparse per-sample weights (a few adapters per sample out of a large library): each sample's
  adapters are gathered and applied with batched products, so the cost grows with the adapters a sample uses,
  not with the library;
- `dispatched_mix`: sparse per-token weights (top-k per token): each adapter runs on the tokens that weight it, so
  the cost grows with the adapters a token uses;
- `project` (a linear map applied to every delta: fold it into U_k and c_k once), `dots` (per-token dot products
  q . delta_k) and `weighted_sum`, from inner activations: attention over deltas (fusion) without materialising
  them;
- `stack`: every adapter's delta, (B, T, K, Dout), where a combiner needs them materialised.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Gathered", "LowRank", "apply_gathered", "block_sums", "dispatched_mix", "dots", "gather", "gathered_mix", "inner", "mix",
    "project", "rank_weights", "stack", "stack_inner", "weighted_sum",
]


@dataclass(frozen=True)
class LowRank:
    """K adapters of one family at one site in factored form.

    delta_k = act(dropout_k(z) @ down_k.T + down_bias_k) @ up_k + up_bias_k, where z is the site's input x
    (`reads = "input"`, LoRA) or its frozen output y (`reads = "output"`, a bottleneck). A family whose delta has
    this form returns it from `Adapter.low_rank`, and mtkit composes its adapters in their inner space: K
    adapters with dense weights cost about one adapter of rank sum(R_k), sparse weights over a large library cost
    the k adapters each sample uses, and delta-reading combiners never materialise the (B, T, K, D) deltas.
    `activation` must map 0 to 0 (relu, gelu, silu, tanh do), so that inner units can be zero-padded.
    """

    reads: Literal["input", "output"]
    down: Sequence[Tensor]  # per adapter (R_k, Din)
    up: Sequence[Tensor]  # per adapter (R_k, Dout), its scale folded in
    down_bias: Sequence[Tensor] | None = None  # per adapter (R_k,)
    up_bias: Sequence[Tensor] | None = None  # per adapter (Dout,)
    activation: Callable[[Tensor], Tensor] | None = None
    dropout: Sequence[float] | None = None  # per adapter, on z, while training

    @property
    def ranks(self) -> list[int]:
        return [int(d.shape[0]) for d in self.down]


def _source(factors: LowRank, x: Tensor, y: Tensor) -> Tensor:
    return x if factors.reads == "input" else y


def _cat(matrices: Sequence[Tensor]) -> Tensor:
    return torch.cat(list(matrices)) if len(matrices) > 1 else matrices[0]


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
        weight = _cat(factors.down)
        bias = None if biases is None else _cat(biases)
        h = F.linear(z, weight.to(z.dtype), None if bias is None else bias.to(z.dtype))
    return factors.activation(h) if factors.activation is not None else h


def rank_weights(weights: Tensor, ranks: Sequence[int]) -> Tensor:
    """Per-adapter weights (B, K) or (B, T, K) repeated over each adapter's inner units -> (B, 1, sum R) or (B, T, sum R)."""
    if len(ranks) == 1:
        w = weights
    elif len(set(ranks)) == 1:
        w = weights.unsqueeze(-1).expand(*weights.shape, ranks[0]).flatten(-2)
    else:
        repeats = torch.tensor(list(ranks), device=weights.device)
        w = weights.repeat_interleave(repeats, dim=-1, output_size=sum(ranks))
    return w.unsqueeze(1) if w.dim() == 2 else w


def block_sums(values: Tensor, ranks: Sequence[int]) -> Tensor:
    """Sums of consecutive blocks of R_k entries on the last axis: (..., sum R) -> (..., K)."""
    if len(set(ranks)) == 1:
        return values.unflatten(-1, (len(ranks), ranks[0])).sum(-1)
    return torch.stack([piece.sum(-1) for piece in values.split(list(ranks), dim=-1)], dim=-1)


def _bias(weights: Tensor, up_bias: Sequence[Tensor], dtype: torch.dtype) -> Tensor:
    bias = weights.to(dtype) @ torch.stack(list(up_bias)).to(dtype)  # (B, Dout) or (B, T, Dout)
    return bias.unsqueeze(1) if bias.dim() == 2 else bias


def weighted_sum(factors: LowRank, h: Tensor, weights: Tensor) -> Tensor:
    """sum_k w_k delta_k from the inner activations h (B, T, sum R), for weights (B, K) or (B, T, K).  -> (B, T, Dout)"""
    h = h * rank_weights(weights.to(h.dtype), factors.ranks)
    out = h @ _cat(factors.up).to(h.dtype)  # (sum R, Dout)
    if factors.up_bias is not None:
        out = out + _bias(weights, factors.up_bias, out.dtype)
    return out


def mix(factors: LowRank, x: Tensor, y: Tensor, weights: Tensor, *, training: bool) -> Tensor:
    """sum_k w_k delta_k for dense weights (B, K) or (B, T, K), in the inner space.  -> (B, T, Dout)"""
    return weighted_sum(factors, inner(factors, x, y, training=training), weights)


def stack_inner(factors: LowRank, h: Tensor) -> Tensor:
    """Every adapter's delta from the inner activations h (B, T, sum R).  -> (B, T, K, Dout)"""
    ranks = factors.ranks
    if len(set(ranks)) == 1:
        k, r = len(ranks), ranks[0]
        out = torch.einsum("btkr,kro->btko", h.unflatten(-1, (k, r)), torch.stack(list(factors.up)).to(h.dtype))
    else:
        out = torch.stack([piece @ up.to(h.dtype) for piece, up in zip(h.split(ranks, dim=-1), factors.up, strict=True)], dim=2)
    if factors.up_bias is not None:
        out = out + torch.stack(list(factors.up_bias)).to(out.dtype)
    return out


def stack(factors: LowRank, x: Tensor, y: Tensor, *, training: bool) -> Tensor:
    """Every adapter's delta.  -> (B, T, K, Dout)"""
    return stack_inner(factors, inner(factors, x, y, training=training))


def project(factors: LowRank, weight: Tensor, bias: Tensor | None = None) -> LowRank:
    """The factored form of every delta mapped by a linear layer, delta_k @ weight.T + bias (weight (P, Dout)).

    The map folds into the output side once (U_k weight^T, c_k weight^T + bias): its cost no longer grows with
    the tokens.
    """
    ranks = factors.ranks
    up = list((_cat(factors.up) @ weight.T.to(factors.up[0].dtype)).split(ranks))  # (R_k, P) each
    up_bias: list[Tensor] | None = None
    if factors.up_bias is not None:
        up_bias = list(torch.stack(list(factors.up_bias)) @ weight.T.to(factors.up_bias[0].dtype))
    if bias is not None:
        up_bias = [bias] * len(ranks) if up_bias is None else [c + bias for c in up_bias]
    return dataclasses.replace(factors, up=up, up_bias=up_bias)


def dots(factors: LowRank, h: Tensor, queries: Tensor, weight: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
    """Per-token dot products q . delta_k from the inner activations h (B, T, sum R).  -> (B, T, K)

    q = queries (B, T, Dq) when `weight` is None, else queries @ weight.T + bias (weight (Dout, Dq)). With a
    weight, the map folds into the output matrices when that is cheaper per token (Dq (sum R + K) against
    Dout (Dq + sum R + K)): then per token only the product of the queries with sum R + K folded vectors remains.
    """
    ranks = factors.ranks
    size, k = sum(ranks), len(ranks)
    up = _cat(factors.up).to(h.dtype)  # (sum R, Dout)
    vectors = up if factors.up_bias is None else torch.cat([up, torch.stack(list(factors.up_bias)).to(h.dtype)])
    offset: Tensor | None = None
    if weight is not None:
        d_out, d_q = weight.shape
        if d_q * (size + k) > d_out * (d_q + size + k):
            queries, weight = F.linear(queries, weight.to(queries.dtype), None if bias is None else bias.to(queries.dtype)), None
        else:  # (q W^T + b) . v = q . (v W) + b . v
            offset = vectors @ bias.to(h.dtype) if bias is not None else None
            vectors = vectors @ weight.to(h.dtype)  # (sum R [+ K], Dq)
    products = queries.to(h.dtype) @ vectors.T  # (B, T, sum R [+ K])
    if offset is not None:
        products = products + offset
    scores = block_sums(h * products[..., :size], ranks)
    if factors.up_bias is not None:
        scores = scores + products[..., size:]
    return scores


def _padded(matrices: Sequence[Tensor], rank: int) -> Tensor:
    """(R_k, D) matrices zero-padded to `rank` rows and stacked -> (K, rank, D)."""
    return torch.stack([m if m.shape[0] == rank else F.pad(m, (0, 0, 0, rank - m.shape[0])) for m in matrices])


@dataclass(frozen=True)
class Gathered:
    """Each sample's adapters of a `LowRank`, gathered for per-sample weights (B, K) with at most k non-zero entries a
    row (zero-padded to one rank R; padded units stay zero since act(0) = 0). Made once per forward, or once per
    generate call: its decoding steps reuse it (`SiteAdapters.apply`)."""

    factors: LowRank
    columns: list[int]  # the library's adapters some sample uses
    slot: Tensor  # (B, k) each sample's adapters, as positions in `columns`
    weights: Tensor  # (B, k) their weights
    rank: int
    down: Tensor  # (B, k, R, Din)
    up: Tensor  # (B, k R, Dout)


def gather(factors: LowRank, weights: Tensor, per_sample: int) -> Gathered:
    """The adapters of each sample with a non-zero weight in `weights` (B, K), at most `per_sample` a row."""
    # Each row's non-zero columns first (any sign); rows with fewer fill up with zero-weight columns, which add nothing.
    index = weights.detach().ne(0).to(torch.float32).topk(per_sample, dim=-1).indices  # (B, k)
    used, slot = index.unique(return_inverse=True)  # only the library's adapters some sample uses are stacked
    columns = used.tolist()
    rank = max(factors.ranks[c] for c in columns)
    down = _padded([factors.down[c] for c in columns], rank)[slot]  # (B, k, R, Din)
    up = _padded([factors.up[c] for c in columns], rank)[slot].flatten(1, 2)  # (B, k R, Dout)
    return Gathered(factors, columns, slot, weights.gather(-1, index), rank, down, up)


def gathered_mix(factors: LowRank, x: Tensor, y: Tensor, weights: Tensor, per_sample: int, *, training: bool = False) -> Tensor:
    """sum_k w_k delta_k for per-sample weights (B, K) with at most `per_sample` non-zero entries a row.

    Each sample's adapters are gathered (`gather`) and applied with batched products (`apply_gathered`), so the work
    grows with `per_sample`, not with K. Equal to `mix` with the same weights; the gradient reaches the adapters and
    the non-zero weights (a zero weight is taken as masked). While training, each (sample, adapter) pair draws its own
    dropout mask over z, as `mix` does per adapter.  -> (B, T, Dout)
    """
    return apply_gathered(gather(factors, weights, per_sample), x, y, training=training)


def apply_gathered(gathered: Gathered, x: Tensor, y: Tensor, *, training: bool = False) -> Tensor:
    """sum_k w_k delta_k of the gathered adapters for the site input x / output y.  -> (B, T, Dout)"""
    factors, columns, slot, rank = gathered.factors, gathered.columns, gathered.slot, gathered.rank
    z = _source(factors, x, y)
    down = gathered.down.to(z.dtype)
    batch, k = slot.shape
    drops = [factors.dropout[c] for c in columns] if factors.dropout is not None else []
    if training and any(p > 0 for p in drops):
        p = torch.tensor(drops, dtype=z.dtype, device=z.device)[slot][..., None, None]  # (B, k, 1, 1)
        zk = z.unsqueeze(1).expand(batch, k, *z.shape[1:])
        zk = zk * (torch.rand(zk.shape, device=z.device) >= p).to(z.dtype) / (1 - p)  # (B, k, T, Din), a mask per (sample, adapter)
        h = torch.matmul(zk, down.transpose(-1, -2)).permute(0, 2, 1, 3).flatten(2)  # (B, T, k R)
    else:
        h = torch.bmm(z, down.flatten(1, 2).transpose(1, 2))  # (B, T, k R)
    if factors.down_bias is not None:
        bias = torch.stack([F.pad(factors.down_bias[c], (0, rank - factors.down_bias[c].shape[0])) for c in columns])[slot]
        h = h + bias.flatten(1, 2).unsqueeze(1).to(h.dtype)
    if factors.activation is not None:
        h = factors.activation(h)
    top_w = gathered.weights
    h = h * top_w.to(h.dtype).repeat_interleave(rank, dim=-1).unsqueeze(1)
    out = torch.bmm(h, gathered.up.to(h.dtype))  # (B, T, Dout)
    if factors.up_bias is not None:
        up_bias = torch.stack([factors.up_bias[c] for c in columns])[slot]  # (B, k, Dout)
        out = out + torch.einsum("bk,bko->bo", top_w.to(out.dtype), up_bias.to(out.dtype)).unsqueeze(1)
    return out


def dispatched_mix(factors: LowRank, x: Tensor, y: Tensor, weights: Tensor, *, training: bool = False) -> Tensor:
    """sum_k w_k delta_k for per-token weights (B, T, K) that are zero for most (token, adapter) pairs.

    The (token, adapter) pairs with a non-zero weight are grouped by adapter and each adapter runs on its own tokens
    only: all groups in two batched products when they are of similar sizes (zero-padded to the largest), else one
    group after another (a few adapters taking most tokens would make the padding cost more than it saves). The work
    grows with the adapters a token uses, not with K. Equal to `mix` with the same weights; the gradient reaches the
    adapters and the non-zero weights (a zero weight is taken as masked). While training, each adapter draws its own
    dropout mask over its tokens, as `mix` does.  -> (B, T, Dout)
    """
    z = _source(factors, x, y)
    flat = z.reshape(-1, z.shape[-1])  # (B T, Din)
    w = weights.reshape(-1, weights.shape[-1])  # (B T, K)
    pairs = w.detach().ne(0).nonzero()  # (P, 2): token, adapter
    if pairs.numel() == 0:
        return y.new_zeros(y.shape)
    pairs = pairs[pairs[:, 1].argsort(stable=True)]
    rows, columns = pairs[:, 0], pairs[:, 1]
    used, group, counts = columns.unique_consecutive(return_inverse=True, return_counts=True)
    chosen = used.tolist()
    if len(chosen) * int(counts.max()) <= 2 * len(rows):
        deltas = _grouped_deltas(factors, flat, rows, group, counts, chosen, training)
    else:
        deltas = torch.cat([_adapter_delta(factors, c, flat[r], training) for c, r in zip(chosen, rows.split(counts.tolist()), strict=True)])
    deltas = deltas * w[rows, columns].unsqueeze(-1).to(deltas.dtype)
    out = deltas.new_zeros(flat.shape[0], deltas.shape[-1]).index_add(0, rows, deltas)  # one scatter back
    return out.reshape(*z.shape[:-1], out.shape[-1])


def _adapter_delta(factors: LowRank, column: int, z: Tensor, training: bool) -> Tensor:
    """Adapter `column`'s delta for the rows z (N, Din).  -> (N, Dout)"""
    p = factors.dropout[column] if factors.dropout is not None else 0.0
    if training and p > 0:
        z = F.dropout(z, p, True)
    bias = None if factors.down_bias is None else factors.down_bias[column].to(z.dtype)
    h = F.linear(z, factors.down[column].to(z.dtype), bias)
    if factors.activation is not None:
        h = factors.activation(h)
    delta = h @ factors.up[column].to(h.dtype)
    return delta if factors.up_bias is None else delta + factors.up_bias[column].to(delta.dtype)


def _grouped_deltas(
    factors: LowRank, flat: Tensor, rows: Tensor, group: Tensor, counts: Tensor, chosen: list[int], training: bool
) -> Tensor:
    """Every pair's delta, the adapters' token groups zero-padded to the largest and applied batched.  -> (P, Dout)"""
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(rows), device=rows.device) - starts[group]  # each pair's place in its adapter's group
    rank = max(factors.ranks[c] for c in chosen)
    grouped = flat.new_zeros(len(chosen), int(counts.max()), flat.shape[-1]).index_put((group, slot), flat[rows])  # (E, M, Din)
    if training and factors.dropout is not None and any(factors.dropout[c] > 0 for c in chosen):
        p = torch.tensor([factors.dropout[c] for c in chosen], dtype=grouped.dtype, device=grouped.device)[:, None, None]
        grouped = grouped * (torch.rand(grouped.shape, device=grouped.device) >= p).to(grouped.dtype) / (1 - p)
    h = torch.bmm(grouped, _padded([factors.down[c] for c in chosen], rank).to(grouped.dtype).transpose(1, 2))  # (E, M, R)
    if factors.down_bias is not None:
        biases = [F.pad(factors.down_bias[c], (0, rank - factors.down_bias[c].shape[0])) for c in chosen]
        h = h + torch.stack(biases)[:, None, :].to(h.dtype)
    if factors.activation is not None:
        h = factors.activation(h)
    deltas = torch.bmm(h, _padded([factors.up[c] for c in chosen], rank).to(h.dtype))[group, slot]  # (P, Dout)
    if factors.up_bias is not None:
        deltas = deltas + torch.stack([factors.up_bias[c] for c in chosen])[group].to(deltas.dtype)
    return deltas


deltas = stack_inner
"""Former name of `stack_inner`, kept so that plugins calling it keep working."""
