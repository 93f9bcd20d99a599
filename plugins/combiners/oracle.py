"""`oracle`: the task id of each sample picks its adapter."""

from __future__ import annotations

from torch import Tensor

from mtkit import Combiner, ForwardContext

from .config import OracleCombinerConfig


class OracleCombiner(Combiner):
    """Each sample's task id picks its task's adapter (batches may mix tasks).

    The weights carry no gradient, so only the adapters some sample of the batch uses are computed.
    """

    name = "oracle"
    config_class = OracleCombinerConfig
    _weights: Tensor | None = None  # this forward's one-hot rows, made at its first site (every decoding step reuses them)

    def begin(self, ctx: ForwardContext) -> None:
        self._weights = None

    def weights(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor | None:
        if self._weights is None or self._weights.device != x.device:
            self._weights = ctx.own_adapter_weights().to(x.device)
        return self._weights
