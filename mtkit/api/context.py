"""What every site of one forward pass knows about the batch in flight: facts only, no component state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["FROZEN_TOKENS", "ForwardContext", "masked_mean"]

FROZEN_TOKENS = "frozen_tokens"
"""The representation source that is the frozen backbone's last hidden state per token, (B, T, D), from a separate
pass (what X-LoRA's classifier reads); a component asks for it in `representation_sources`."""


def masked_mean(hidden: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over tokens that the attention mask keeps.  (B, T, D), (B, T) -> (B, D)"""
    if mask is None:
        return hidden.mean(dim=1)
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


@dataclass
class ForwardContext:
    """Facts about the batch of one forward pass (or one `generate` call), shared by every site.

    Components keep their own per-forward state (cleared in their `begin`); nothing here is written by a
    component, so two plugins can never collide in it.
    """

    task_ids: Tensor | None = None
    """(B,) each sample's task index. Combiners may read it under oracle routing and for per-task parameters;
    a learned combiner that must decide from the input alone does not."""
    own_adapters: Tensor | None = None
    """(B,) the column of each sample's own adapter (the one its task uses under oracle routing), -1 for none."""
    attention_mask: Tensor | None = None  # (B, T)
    pool_mask: Tensor | None = None
    """(B, T) the tokens pooled into `representations`: the attention mask's, or fewer where the batch marks them
    (`ROUTING_MASK`: an LM's prompt without its answer in training, as at generation)."""
    num_adapters: int = 0
    representations: dict[str, Tensor] = field(default_factory=dict)
    """Pooled input representations by source (`embeddings`, `layer:N`, `frozen_pass`), each (B, D), filled by the
    model as the pass reaches them, and only for the sources a running component reads; `frozen_tokens` is unpooled,
    (B, T, D)."""

    site_plans: dict[str, Any] = field(default_factory=dict, repr=False)
    """Core bookkeeping, not for components: what `SiteAdapters.apply` prepared at each site for the weights it was
    given (which adapters run, each sample's gathered factors), reused while the same weights come back within this
    pass: every decoding step of a generate call."""

    def representation(self, source: str) -> Tensor | None:
        """The pooled input representation from `source`, or None if the pass has not reached it yet."""
        return self.representations.get(source)

    def own_adapter_weights(self) -> Tensor:
        """(B, K) one-hot rows at each sample's own adapter (zero rows for samples whose task has none)."""
        assert self.own_adapters is not None, "the model always passes each sample's own adapter"
        k = max(self.num_adapters, 1)
        index = self.own_adapters
        return F.one_hot(index.clamp_min(0), k).to(torch.float32) * (index >= 0).unsqueeze(-1)

    @property
    def batch_size(self) -> int:
        assert self.attention_mask is not None
        return int(self.attention_mask.shape[0])

    @property
    def device(self) -> torch.device:
        assert self.attention_mask is not None
        return self.attention_mask.device
