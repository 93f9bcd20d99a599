"""Merging LoRAs at one site into one LoRA, as PEFT's `LoraModel.add_weighted_adapter` does, with PEFT's own
merge functions (`peft.utils.merge_utils`): what is left here is which matrices they are given, with which weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from mtkit import MtkitError

Factors = tuple[Tensor, Tensor, float]
"""(A (R, Din), B (Dout, R), scale) of one LoRA at a site: delta = scale * B A x."""


def _combine(method: str, tensors: list[Tensor], weights: Tensor, density: float | None, majority_sign_method: str) -> Tensor:
    from peft.utils import merge_utils

    if method == "linear":
        return merge_utils.task_arithmetic(tensors, weights)
    if method == "magnitude_prune":
        return merge_utils.magnitude_prune(tensors, weights, density)
    if method == "ties":
        return merge_utils.ties(tensors, weights, density, majority_sign_method)
    if method == "dare_linear":
        return merge_utils.dare_linear(tensors, weights, density)
    if method == "dare_ties":
        return merge_utils.dare_ties(tensors, weights, density, majority_sign_method)
    raise AssertionError(f"unknown merge method {method!r}")


def merge_loras(
    factors: Sequence[Factors],
    weights: Sequence[float],
    method: str,
    *,
    density: float | None = None,
    majority_sign_method: str = "total",
    svd_rank: int | None = None,
    svd_clamp: float | None = None,
    names: Sequence[str] = (),
) -> tuple[Tensor, Tensor]:
    """The merged LoRA (A (R', Din), B (Dout, R')) with delta = B A x (scale 1, as PEFT's merged adapter has alpha = r).

    One LoRA merges as `linear` (PEFT does the same). Entry-wise methods (linear, ties, dare_*, magnitude_prune) merge
    the A matrices and the B matrices separately, each weighted by sqrt(|weight * scale|) (the sign on A only);
    the *svd methods merge the full updates scale * B A and keep the top singular directions; cat stacks the LoRAs.
    """
    method = "linear" if len(factors) == 1 else method
    a_list = [a.detach().float() for a, _, _ in factors]
    b_list = [b.detach().float() for _, b, _ in factors]
    scaled = [w * s for w, (_, _, s) in zip(weights, factors, strict=True)]
    if method == "cat":
        return torch.cat([a * w for a, w in zip(a_list, scaled, strict=True)]), torch.cat(b_list, dim=1)
    if method.endswith("svd"):
        deltas = [(b @ a) * s for a, b, (_, _, s) in zip(a_list, b_list, factors, strict=True)]
        base = "linear" if method == "svd" else method.removesuffix("_svd")
        delta = _combine(base, deltas, torch.tensor(list(weights), dtype=torch.float32), density, majority_sign_method)
        rank = svd_rank or max(a.shape[0] for a in a_list)
        u, singular, vh = torch.linalg.svd(delta, full_matrices=False)
        u, vh = u[:, :rank] @ torch.diag(singular[:rank]), vh[:rank, :]
        if svd_clamp is not None:
            high = torch.quantile(torch.cat([u.flatten(), vh.flatten()]), svd_clamp)
            u, vh = u.clamp(-high, high), vh.clamp(-high, high)
        return vh, u
    ranks = sorted({a.shape[0] for a in a_list})
    if len(ranks) > 1:
        listed = ", ".join(f"{n!r}: {a.shape[0]}" for n, a in zip(names, a_list, strict=False))
        raise MtkitError(
            f"method {method!r} merges the LoRAs' A and B matrices entry by entry, so their ranks must agree ({listed}); "
            "use an svd method or cat for LoRAs of different ranks",
            key="method",
        )
    sign = [1.0 if w >= 0 else -1.0 for w in scaled]
    weights_a = torch.tensor([math.sqrt(abs(w)) * g for w, g in zip(scaled, sign, strict=True)])
    weights_b = torch.tensor([math.sqrt(abs(w)) for w in scaled])
    return (
        _combine(method, a_list, weights_a, density, majority_sign_method),
        _combine(method, b_list, weights_b, density, majority_sign_method),
    )
