"""Token-level mixtures of experts at a site, shared by `mixlora` and `hydra_lora`.

`route` turns a router's logits into per-token expert weights: dense (the softmax over every expert) or top-k
(the k most probable, renormalised). Top-k work is done by `Dispatch`: the (token, expert) assignments are sorted
by expert, so each expert's matrices meet only its own tokens, one contiguous segment each; the work is k rows
per token whatever N is and however the tokens spread over the experts (experts no token chose cost nothing).
`balance_loss` is the Switch Transformer's load-balance loss that keeps the experts evenly used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkit import Adapter, Site, site_key


def parameter_dicts(
    sites: Mapping[str, Site], num_experts: int, rank: int, init: str, *, shared_down: bool
) -> tuple[nn.ParameterDict, nn.ParameterDict, nn.ParameterDict]:
    """A mixture's (A, B, router) parameters at every site (see `site_parameters`), by site key."""
    dicts = nn.ParameterDict(), nn.ParameterDict(), nn.ParameterDict()
    for name, site in sites.items():
        for params, value in zip(dicts, site_parameters(site, num_experts, rank, init, shared_down=shared_down), strict=True):
            params[site_key(name)] = value
    return dicts


def site_parameters(site: Site, num_experts: int, rank: int, init: str, *, shared_down: bool) -> tuple[nn.Parameter, nn.Parameter, nn.Parameter]:
    """A mixture's parameters at a site: the down-projection A (N, R, Din), or (R, Din) shared by every expert; the
    up-projections B (N, Dout, R), zeros (the adapted model equals the base) or small random values (init "random",
    tests); the router (N, Din). A and the router start as nn.Linear weights do (PEFT's choice for A)."""
    down = torch.empty(rank, site.in_features) if shared_down else torch.empty(num_experts, rank, site.in_features)
    for matrix in [down] if shared_down else down:
        nn.init.kaiming_uniform_(matrix, a=math.sqrt(5))
    up = torch.zeros(num_experts, site.out_features, rank)
    if init == "random":
        nn.init.normal_(up, std=0.02)
    router = torch.empty(num_experts, site.in_features)
    nn.init.kaiming_uniform_(router, a=math.sqrt(5))
    return nn.Parameter(down), nn.Parameter(up), nn.Parameter(router)


def mixture_delta(
    adapter: Adapter, params: tuple[Tensor, Tensor, Tensor], x: Tensor, mask: Tensor | None, top_k: int | None, scale: float, dropout: float, sample_weights: Tensor | None
) -> Tensor:
    """A mixture's delta for x (B, T, Din) from its site parameters (A, B, router) as `site_parameters` makes them:
    per-expert A (mixlora) or one shared A (hydra_lora); every expert weighted (top_k None) or each token's top k,
    computed on their own tokens only.  -> (B, T, Dout)"""
    down, up, router = params
    inputs, routing, weights = routed_tokens(adapter, x, mask, router, top_k, dropout, scale, sample_weights)
    if down.dim() == 2:  # shared: every expert's inner activations are the same A x
        inputs, down = F.linear(inputs, down.to(inputs.dtype)), None  # (M, R)
    if routing.index is None:
        inner = inputs.repeat(1, len(up)) if down is None else F.linear(inputs, down.flatten(0, 1).to(inputs.dtype))  # (M, N R)
        out = dense_products(inner, weights, up)
    else:
        out = expert_products(Dispatch(routing.index, len(up)), inputs, weights, down, up)
    return out.view(*x.shape[:-1], -1)


@dataclass(frozen=True)
class Routing:
    """One site's routing of M tokens over N experts."""

    probs: Tensor  # (M, N) the router's softmax (empty where route() was told nothing reads it)
    index: Tensor | None  # (M, k) each token's experts, None when dense
    weights: Tensor  # (M, k) their renormalised probabilities, or (M, N) = probs when dense


def route(logits: Tensor, top_k: int | None, *, probs: bool = True) -> Routing:
    """Per-token expert weights from router logits (M, N): all of them (top_k None) or the top k renormalised.

    The renormalised top k of the softmax are the softmax of the top k logits; `probs=False` (nothing reads the
    full softmax: no balance loss outside training) skips the softmax over every expert.
    """
    if top_k is None:
        p = logits.float().softmax(-1)
        return Routing(p, None, p)
    top, index = logits.float().topk(top_k, dim=-1)
    return Routing(logits.float().softmax(-1) if probs else top.new_zeros(0), index, top.softmax(-1))


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
    """The assignments of a top-k routing (M, k) sorted by expert: each expert's tokens are one contiguous segment.

    `gather` lays per-token rows out in that order (k M rows), `sorted_weights` gives each its routing weight,
    `per_expert` runs a function on each expert's segment alone (experts no token chose cost nothing), and
    `combine` adds every result back to its token. Unlike a padded (N, C, D) block, no row is computed twice or for
    nothing, however unbalanced the routing.
    """

    def __init__(self, index: Tensor, num_experts: int) -> None:
        self.tokens_in = index.shape[0]
        flat = index.flatten()
        order = flat.argsort(stable=True)  # assignments sorted by expert
        self.counts: list[int] = torch.bincount(flat, minlength=num_experts).tolist()
        self.order = order  # each sorted assignment's place in the flattened (M, k) routing
        self.tokens = order // index.shape[1]  # the token of each sorted assignment

    def gather(self, values: Tensor) -> Tensor:
        """(M, D) per-token rows -> (k M, D) sorted by expert."""
        return values.index_select(0, self.tokens)

    def sorted_weights(self, weights: Tensor) -> Tensor:
        """(M, k) routing weights -> (k M, 1) in the sorted order."""
        return weights.flatten()[self.order].unsqueeze(-1)

    def per_expert(self, rows: Tensor, weights: Tensor, fn: Callable[[int, Tensor, Tensor], Tensor]) -> Tensor:
        """fn(expert, its segment of the sorted rows, their sorted weights) for every expert with tokens, concatenated
        in the sorted order."""
        pieces = [
            fn(e, segment, w)
            for e, (segment, w) in enumerate(zip(rows.split(self.counts), weights.split(self.counts), strict=True))
            if self.counts[e]
        ]
        return torch.cat(pieces) if len(pieces) > 1 else pieces[0]

    def combine(self, values: Tensor) -> Tensor:
        """(k M, D) sorted results -> (M, D), each token the sum of its k results."""
        return values.new_zeros(self.tokens_in, values.shape[-1]).index_add(0, self.tokens, values)


def expert_products(dispatch: Dispatch, rows: Tensor, weights: Tensor, down: Tensor | None, up: Tensor) -> Tensor:
    """sum over each token's experts e of w_e (rows down_e^T) up_e^T, each expert computed on its own tokens only.

    rows (M, Din); weights (M, k); down (N, R, Din) or None (the rows are then every expert's inner activations,
    (M, R), as with a shared down-projection); up (N, Dout, R). The weights scale the inner activations (R wide).
    -> (M, Dout)
    """

    ups = up.to(rows.dtype).unbind(0)  # one backward op for every expert's gradient, not one full-size one each
    downs = None if down is None else down.to(rows.dtype).unbind(0)

    def expert(e: int, segment: Tensor, w: Tensor) -> Tensor:
        inner = segment if downs is None else segment @ downs[e].T
        return (inner * w) @ ups[e].T

    sorted_rows = dispatch.gather(rows)
    return dispatch.combine(dispatch.per_expert(sorted_rows, dispatch.sorted_weights(weights.to(rows.dtype)), expert))


def dense_products(inner: Tensor, weights: Tensor, up: Tensor) -> Tensor:
    """sum_e w_e inner_e up_e^T for every expert: inner (M, N R) (expert-major), weights (M, N), up (N, Dout, R)."""
    n, _, r = up.shape
    scaled = inner * weights.to(inner.dtype).repeat_interleave(r, dim=-1)
    return scaled @ up.transpose(1, 2).flatten(0, 1).to(inner.dtype)  # (N R, Dout)


def routed_tokens(
    adapter: Adapter, x: Tensor, mask: Tensor | None, router: Tensor, top_k: int | None, dropout: float, scale: float, sample_weights: Tensor | None
) -> tuple[Tensor, Routing, Tensor]:
    """x's tokens (M, Din) as the experts see them (dropout while training; the router sees them unchanged), their
    routing, and the weights to apply: the routing's times `scale` and the samples' own weights (B,) or (B, T) (a
    combiner's), folded into k (or N) numbers per token rather than applied to the output.

    While training, adds the routing's balance loss to the adapter's `expert_balance` (mean over its sites).
    """
    flat = x.flatten(0, -2)
    routing = route(F.linear(flat, router.to(flat.dtype)), top_k, probs=adapter.training)
    if adapter.training:
        adapter.add_aux_loss("expert_balance", balance_loss(routing, token_mask(x, mask)) / len(adapter.site_names))
        if dropout > 0:
            flat = F.dropout(flat, dropout, True)
    weights = routing.weights * scale
    if sample_weights is not None:
        per_token = sample_weights.to(weights.dtype)
        per_token = per_token.unsqueeze(-1).expand(x.shape[:-1]) if per_token.dim() == 1 else per_token
        weights = weights * per_token.reshape(-1, 1)
    return flat, routing, weights


def token_mask(x: Tensor, mask: Tensor | None) -> Tensor | None:
    """The attention mask flattened over x's tokens (M,), or None where it does not describe x (decoding steps)."""
    if mask is None or tuple(mask.shape) != tuple(x.shape[:-1]):
        return None
    return mask.flatten()


def mix_by_rows(
    adapters: Sequence[Adapter], x: Tensor, y: Tensor, weights: Tensor, mask: Tensor | None, routed: Callable[[Adapter, Tensor, Tensor | None, Tensor], Tensor]
) -> Tensor:
    """sum_k weights[..., k] delta_k, each adapter computed only on the samples it weights (B, K) or (B, T, K).

    `routed(adapter, x_rows, mask_rows, weights_rows)` is an adapter's delta on some samples, scaled by their weights.
    A sample whose weight for an adapter is zero everywhere adds nothing and is skipped, so under oracle routing each
    sample runs (and trains the router and the balance loss of) its own task's mixture alone.
    """
    out: Tensor | None = None
    for k, adapter in enumerate(adapters):
        w = weights[..., k]
        rows = w.detach().ne(0) if w.dim() == 1 else w.detach().ne(0).any(-1)
        if not bool(rows.any()):
            continue
        if bool(rows.all()):
            piece = routed(adapter, x, mask, w)
        else:
            index = rows.nonzero().squeeze(1)
            delta = routed(adapter, x[index], None if mask is None else mask[index], w[index])
            piece = torch.zeros_like(y).index_add(0, index, delta)
        out = piece if out is None else out + piece
    return torch.zeros_like(y) if out is None else out
