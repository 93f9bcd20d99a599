"""Built-in combiners."""

from __future__ import annotations

from mtkit import Register, hookimpl

from .config import (
    ArrowCombinerConfig,
    CatCombinerConfig,
    FusionAttentionCombinerConfig,
    GatingCombinerConfig,
    LayerGatesCombinerConfig,
    LoraHubCombinerConfig,
    MergeCombinerConfig,
    OracleCombinerConfig,
    PhatgooseCombinerConfig,
    RandomCombinerConfig,
    RetrievalCombinerConfig,
    RouterCombinerConfig,
    UniformCombinerConfig,
    WeightedCombinerConfig,
)

MTKIT_PLUGIN_API = 2


@hookimpl
def mtkit_register_components(register: Register) -> None:
    register("mtkit_combiners.oracle:OracleCombiner", kind="combiner", name="oracle", config=OracleCombinerConfig)
    register("mtkit_combiners.weighted:WeightedCombiner", kind="combiner", name="weighted", config=WeightedCombinerConfig)
    register("mtkit_combiners.gating:GatingCombiner", kind="combiner", name="gating", config=GatingCombinerConfig)
    register("mtkit_combiners.router:RouterCombiner", kind="combiner", name="router", config=RouterCombinerConfig)
    register(
        "mtkit_combiners.fusion_attention:FusionAttentionCombiner",
        kind="combiner",
        name="fusion_attention",
        config=FusionAttentionCombinerConfig,
    )
    register("mtkit_combiners.baselines:UniformCombiner", kind="combiner", name="uniform", config=UniformCombinerConfig)
    register("mtkit_combiners.baselines:RandomCombiner", kind="combiner", name="random", config=RandomCombinerConfig)
    register("mtkit_combiners.arrow:ArrowCombiner", kind="combiner", name="arrow", config=ArrowCombinerConfig)
    register("mtkit_combiners.merge:MergeCombiner", kind="combiner", name="merge", config=MergeCombinerConfig)
    register("mtkit_combiners.lorahub:LoraHubCombiner", kind="combiner", name="lorahub", config=LoraHubCombinerConfig)
    register("mtkit_combiners.retrieval:RetrievalCombiner", kind="combiner", name="retrieval", config=RetrievalCombinerConfig)
    register("mtkit_combiners.cat:CatCombiner", kind="combiner", name="cat", config=CatCombinerConfig)
    register("mtkit_combiners.phatgoose:PhatgooseCombiner", kind="combiner", name="phatgoose", config=PhatgooseCombinerConfig)
    register("mtkit_combiners.layer_gates:LayerGatesCombiner", kind="combiner", name="layer_gates", config=LayerGatesCombinerConfig)
