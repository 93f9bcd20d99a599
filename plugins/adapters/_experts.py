"""Token-level mixtures of experts at a site, shared by `mixlora` and `hydra_lora`.

`route` turns a router's logits into per-token expert weights: dense (the softmax over every expert) or top-k
(the k most probable, renormalised). Top-k work is done by `Dispatch`: the (token, expert) assignments are
grouped by expert into an (N, C, D) block, C the busiest expert's load, so each expert matrix meets only its
own tokens in one batched product and the work grows with k (about k M / N rows per expert for M tokens under
balanced routing), not with N. `balance_loss` is the Switch Transformer's load-balance loss that keeps it so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mtkit import Adapter


@dataclass(frozen=True)
class Routing:
    """One site's routing of M tokens over N experts."""

    probs: Tensor  # (M, N) the router's softmax
    index: Tensor | None  # (M, k) each token's experts, None when dense
    weights: Tensor  # (M, k) their renormalised probabilities, or (M, N) = probs when dense


def route(logits: Tensor, top_k: int | None) -> Routing:
    """Per-token expert weights from router logits (M, N): all of them (top_k None) or the top k renormalised."""
    probs = logits.float().softmax(-1)
    if top_k is None:
        return Routing(probs, None, probs)
    top, index = probs.topk(top_k, dim=-1)
    return Routing(probs, index, top / top.sum(-1, keepdim=True))


def balance_loss(routing: Routing, mask: Tensor | None) -> Tensor:
    """Switch Transformer load balance over the tokens `mask` (M,) keeps: N * sum_i f_i P_i.

    f_i is the share of the token-to-expert assignments that go to expert i (the top-k ones; the argmax when
    dense) and P_i the mean probability the router gives i. It is 1 when the load is even and N when one expert
    takes every token; the gradient reaches the router through P.
    """
    probs = routing.probs
    n = probs.shape[-1]
    chosen = routing.index if routing.index is not None else probs.argmax(-1, keepdim=True)  # (M, k)
    keep = torch.ones(probs.shape[0], device=probs.device) if mask is None else mask.to(probs.dtype)
    tokens = keep.sum().clamp_min(1.0)
    counts = F.one_hot(chosen, n).sum(1).to(probs.dtype)  # (M, N) assignments per token and expert
    share = (counts * keep[:, None]).sum(0) / (tokens * chosen.shape[-1])
    mean_prob = (probs * keep[:, None]).sum(0) / tokens
    return n * (share * mean_prob).sum()


class Dispatch:
    """The assignments of a top-k routing (M, k) grouped by expert into N blocks of C slots (C = the largest load).

    `gather` lays rows of a per-token tensor out in those slots (empty slots are zero), `slot_weights` gives each
    slot its routing weight, and `combine` adds each slot's result back to its token.
    """

    def __init__(self, index: Tensor, num_experts: int) -> None:
        self.tokens_in, k = index.shape
        flat = index.flatten()
        order = flat.argsort(stable=True)  # assignments sorted by expert
        expert = flat[order]
        counts = torch.bincount(flat, minlength=num_experts)
        self.capacity = max(1, int(counts.max()))
        start = counts.cumsum(0) - counts
        position = torch.arange(flat.numel(), device=flat.device) - start[expert]
        self.num_experts = num_experts
        self.order = order  # each sorted assignment's place in the flattened (M, k) routing
        self.tokens = order // k  # the token of each sorted assignment
        self.slots = expert * self.capacity + position  # its slot in the flattened (N, C) block

    def gather(self, values: Tensor) -> Tensor:
        """(M, D) per-token rows -> (N, C, D), each expert's tokens in its block."""
        out = values.new_zeros(self.num_experts * self.capacity, values.shape[-1])
        return out.index_copy(0, self.slots, values[self.tokens]).view(self.num_experts, self.capacity, -1)

    def slot_weights(self, weights: Tensor) -> Tensor:
        """(M, k) routing weights -> (N, C, 1), zero in empty slots."""
        out = weights.new_zeros(self.num_experts * self.capacity)
        return out.index_copy(0, self.slots, weights.flatten()[self.order]).view(self.num_experts, self.capacity, 1)

    def combine(self, values: Tensor) -> Tensor:
        """(N, C, D) per-slot results -> (M, D), each token the sum over its slots."""
        picked = values.flatten(0, 1)[self.slots]
        return values.new_zeros(self.tokens_in, values.shape[-1]).index_add(0, self.tokens, picked)


def expert_products(dispatch: Dispatch, rows: Tensor, weights: Tensor, down: Tensor | None, up: Tensor) -> Tensor:
    """sum over each token's experts e of w_e (rows down_e^T) up_e^T, computed per expert on its tokens only.

    rows (M, Din); weights (M, k); down (N, R, Din) or None (the rows are already each expert's inner activations,
    (M, R)); up (N, Dout, R).  -> (M, Dout)
    """
    h = dispatch.gather(rows)  # (N, C, Din or R)
    if down is not None:
        h = torch.bmm(h, down.transpose(1, 2).to(h.dtype))  # (N, C, R)
    h = h * dispatch.slot_weights(weights.to(h.dtype))
    return dispatch.combine(torch.bmm(h, up.transpose(1, 2).to(h.dtype)))  # (M, Dout)


def dense_products(inner: Tensor, weights: Tensor, up: Tensor) -> Tensor:
    """sum_e w_e inner_e up_e^T for every expert: inner (M, N R) (expert-major), weights (M, N), up (N, Dout, R)."""
    n, _, r = up.shape
    scaled = inner * weights.to(inner.dtype).repeat_interleave(r, dim=-1)
    return scaled @ up.transpose(1, 2).flatten(0, 1).to(inner.dtype)  # (N R, Dout)


def routed_tokens(adapter: Adapter, x: Tensor, mask: Tensor | None, router: Tensor, top_k: int | None, dropout: float) -> tuple[Tensor, Routing]:
    """x's tokens (M, Din) as the experts see them (dropout while training; the router sees them unchanged) and their
    routing; while training, adds the routing's balance loss to the adapter's `expert_balance` (mean over its sites)."""
    flat = x.flatten(0, -2)
    routing = route(F.linear(flat, router.to(flat.dtype)), top_k)
    if adapter.training:
        adapter.add_aux_loss("expert_balance", balance_loss(routing, token_mask(x, mask)) / len(adapter.site_names))
        if dropout > 0:
            flat = F.dropout(flat, dropout, True)
    return flat, routing


def token_mask(x: Tensor, mask: Tensor | None) -> Tensor | None:
    """The attention mask flattened over x's tokens (M,), or None where it does not describe x (decoding steps)."""
    if mask is None or tuple(mask.shape) != tuple(x.shape[:-1]):
        return None
    return mask.flatten()


def mix_by_rows(
    adapters: Sequence[Adapter], x: Tensor, y: Tensor, weights: Tensor, mask: Tensor | None, routed: Callable[[Adapter, Tensor, Tensor | None], Tensor]
) -> Tensor:
    """sum_k weights[..., k] delta_k, each adapter computed only on the samples it weights (B, K) or (B, T, K).

    `routed(adapter, x_rows, mask_rows)` is an adapter's delta on some samples. A sample whose weight for an adapter
    is zero everywhere adds nothing and is skipped, so under oracle routing each sample runs (and trains the router
    and the balance loss of) its own task's mixture alone.
    """
    out = torch.zeros_like(y)
    for k, adapter in enumerate(adapters):
        w = weights[..., k]
        rows = w.detach().ne(0) if w.dim() == 1 else w.detach().ne(0).any(-1)
        if not bool(rows.any()):
            continue
        index = None if bool(rows.all()) else rows.nonzero().squeeze(1)
        picked = (lambda t: t) if index is None else (lambda t: t[index])
        delta = routed(adapter, picked(x), None if mask is None else picked(mask))
        wk = picked(w).to(delta.dtype)
        piece = delta * (wk[:, None, None] if wk.dim() == 1 else wk.unsqueeze(-1))
        out = out + piece if index is None else out.index_add(0, index, piece)
    return out
