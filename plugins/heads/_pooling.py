"""Pooling of (B, T, D) hidden states into (B, D) vectors."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from mtkit import masked_mean


class Pooler(nn.Module):
    def __init__(self, mode: str, hidden_size: int, model_pooler: nn.Module | None = None) -> None:
        super().__init__()
        self.mode = mode
        if mode == "attention":
            self.query = nn.Linear(hidden_size, 1)
        if mode == "pooler":
            # The head's own copy of the backbone model's pooler (dense + tanh over the first token): it trains with
            # the head while the backbone stays frozen.
            assert isinstance(model_pooler, nn.Linear)
            self.dense = copy.deepcopy(model_pooler)
            self.dense.requires_grad_(True)

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        if self.mode == "cls":
            return hidden[:, 0]
        if self.mode == "pooler":
            return torch.tanh(self.dense(hidden[:, 0]))
        if self.mode == "mean":
            return masked_mean(hidden, mask)
        scores = self.query(hidden).squeeze(-1).masked_fill(mask == 0, torch.finfo(hidden.dtype).min)  # (B, T)
        return torch.einsum("bt,btd->bd", scores.softmax(-1), hidden)
