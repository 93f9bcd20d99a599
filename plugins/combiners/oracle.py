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

    def weights(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor | None:
        return ctx.own_adapter_weights().to(x.device)
