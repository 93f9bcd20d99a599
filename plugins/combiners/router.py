"""`router` (DYNAMO): an MLP on a pooled input representation outputs adapter probabilities.

The routing is decided once per forward pass and reused at every site.
Training samples with Gumbel-softmax at the trainer's annealed temperature; evaluation is
deterministic (argmax, or the top-k renormalised). The auxiliary losses are returned through the
router under the names its config declares (`aux_loss_names`), and phases weight them by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkit import Combiner, CombinerSetup, ForwardContext, SiteAdapters

from ._routing import keep_top_k, one_hot_top_k
from .config import RouterCombinerConfig


def load_balance_loss(probs: Tensor) -> Tensor:
    """Switch-Transformer balance: K * sum_k (share of samples whose argmax is k) * (mean prob of k).

    It is 1 when the load is even and grows to K when one adapter takes everything.
    """
    k = probs.shape[-1]
    share = F.one_hot(probs.argmax(-1), k).float().mean(0)
    return k * (share * probs.mean(0)).sum()


def entropy_loss(probs: Tensor) -> Tensor:
    """Mean per-sample routing entropy: lower means more confident routing decisions."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()


def efficiency_loss(probs: Tensor) -> Tensor:
    """Entropy of the batch's mean routing: lower means fewer adapters active across the batch.

    Top-k and argmax routing skip adapters that no sample of a batch chose, so concentrating the
    batch on fewer adapters saves their work.
    """
    load = probs.mean(0)
    return -(load * load.clamp_min(1e-12).log()).sum()


def consistency_loss(probs: Tensor, representation: Tensor) -> Tensor:
    """Similar inputs route alike: squared distance of routing, weighted by positive cosine similarity.

    Representations are centred on the batch mean first: pooled embeddings share a large common
    component, so raw cosines are high for any pair and would pull every input to the same adapter.
    """
    centred = representation.detach().float()
    centred = centred - centred.mean(0, keepdim=True)
    unit = F.normalize(centred, dim=-1)
    similarity = (unit @ unit.T).clamp_min(0.0)
    similarity = similarity * (1 - torch.eye(len(unit), device=unit.device))
    distance = torch.cdist(probs, probs).pow(2)  # (B, B)
    return (similarity * distance).sum() / similarity.sum().clamp_min(1e-12)


def task_supervision_loss(probs: Tensor, oracle_weights: Tensor) -> Tensor:
    """Cross-entropy of the routing against each training sample's own task adapter.

    Training batches carry task ids; evaluation never reads them, so the router still decides from
    the input alone. Samples of tasks without an adapter (zero oracle rows) are left out.
    """
    target = oracle_weights.to(probs.device)
    rows = target.sum(-1) > 0
    if not bool(rows.any()):
        return probs.new_zeros(())
    return -(target[rows] * probs[rows].clamp_min(1e-12).log()).sum(-1).mean()


class RouterCombiner(Combiner):
    """DYNAMO-style router: an MLP on a pooled input representation outputs adapter probabilities."""

    name = "router"
    task_independent = True  # routes from an input representation; task ids feed only the task_supervision loss
    config_class = RouterCombinerConfig
    config: RouterCombinerConfig

    def __init__(self, config: RouterCombinerConfig, *, setup: CombinerSetup) -> None:
        super().__init__(config, setup=setup)
        k = max(1, self.num_adapters)
        self.top_k = min(config.top_k, k) if config.top_k is not None else None
        self.temperature.fill_(config.temperature)
        layers: list[nn.Module] = [nn.LayerNorm(setup.hidden_size)] if config.normalize_input else []
        width = setup.hidden_size
        for _ in range(config.num_layers - 1):
            layers += [nn.Linear(width, config.hidden_dim), nn.GELU(), nn.Dropout(config.dropout)]
            width = config.hidden_dim
        layers.append(nn.Linear(width, k))
        self.mlp = nn.Sequential(*layers)
        self._weights: Tensor | None = None  # this forward's routing, decided once and used at every site
        self._probs: Tensor | None = None
        self._before: set[str] = set()  # sites the pass reached before a `layer:N` representation existed

    def representation_sources(self) -> set[str]:
        return {self.config.source}

    def begin(self, ctx: ForwardContext) -> None:
        # Decided before the pass when the source is ready (embeddings, frozen passes), so activation checkpointing
        # recomputes nothing of it; a `layer:N` source is decided at the first site after layer N.
        self._weights = self._probs = None
        self._before = set()
        representation = ctx.representation(self.config.source)
        if representation is not None:
            self._decide(representation, ctx)

    def route(self, representation: Tensor) -> tuple[Tensor, Tensor]:
        """(B, D) representation -> (weights applied to the deltas (B, K), probabilities (B, K))."""
        logits = self.mlp(representation.float())
        probs = (logits / self.temperature).softmax(-1)
        if not self.training:
            k = self.top_k or 1
            return (keep_top_k(probs, k) if k > 1 else one_hot_top_k(probs, 1)), probs
        noisy = logits
        if self.config.gumbel:
            noisy = logits - torch.empty_like(logits).exponential_().log()  # + Gumbel(0, 1) noise
        soft = (noisy / self.temperature).softmax(-1)
        if self.top_k is not None:
            soft = keep_top_k(soft, self.top_k)
        if self.config.hard:
            hard = one_hot_top_k(soft, self.top_k or 1)
            soft = hard - soft.detach() + soft  # straight-through: hard forward, soft gradients
        return soft, probs

    def _decide(self, representation: Tensor, ctx: ForwardContext) -> None:
        self._weights, self._probs = self.route(representation)
        if self.training:
            probs = self._probs
            self.add_aux_loss("load_balance", load_balance_loss(probs))
            self.add_aux_loss("entropy", entropy_loss(probs))
            self.add_aux_loss("efficiency", efficiency_loss(probs))
            self.add_aux_loss("consistency", consistency_loss(probs, representation))
            if ctx.own_adapters is not None:
                self.add_aux_loss("task_supervision", task_supervision_loss(probs, ctx.own_adapter_weights().to(probs.device)))

    def weights(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor | None:
        if site in self._before:
            return None  # generating with a KV cache: new tokens see what the prompt saw at this site
        if self._weights is None:
            representation = ctx.representation(self.config.source)
            if representation is None:
                self._before.add(site)  # a site before layer N of a `layer:N` source: no adapter applies there
                return None
            self._decide(representation, ctx)
        return self._weights

    def combine(self, site: str, x: Tensor, y: Tensor, adapters: SiteAdapters, ctx: ForwardContext) -> Tensor:
        weights = self.weights(site, x, y, ctx)
        if weights is None:
            return y
        assert self._probs is not None
        self.record(self._probs, ctx)  # the routing probabilities, not the argmax applied in evaluation
        # Top-k training masks the unchosen adapters (no gradient reaches them): skip their work. Not under
        # straight-through training, where the unchosen adapters' deltas carry the gradient.
        sparse = None
        if self.training and self.top_k is not None and self.top_k < self.num_adapters and not self.config.hard:
            sparse = True
        return adapters.apply(x, y, weights, ctx, sparse=sparse)
