"""Configs of the built-in adapters (pydantic only, so listing never imports torch)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from mtkit import AdapterConfig, MtkitError, RepresentationSource, peft_format

# Where a bottleneck goes, as site patterns (regular expressions searched in the full site name).
# FFN output: BERT-like `layer.N.output.dense` (not `attention.output.dense`), Llama-like
# `mlp.down_proj`, DistilBERT `ffn.lin2`, GPT-2 `mlp.c_proj`. Attention output: BERT-like
# `attention.output.dense`, Llama-like `self_attn.o_proj`, DistilBERT `attention.out_lin`.
FFN_OUTPUT = [r"re:(^|\.)layer\.\d+\.output\.dense$", r"re:\.mlp\.down_proj$", r"re:\.ffn\.lin2$", r"re:\.mlp\.c_proj$"]
ATTENTION_OUTPUT = [r"re:\.attention\.output\.dense$", r"re:\.self_attn\.o_proj$", r"re:\.attention\.out_lin$", r"re:\.attn\.c_proj$"]
PLACEMENTS = {"pfeiffer": FFN_OUTPUT, "houlsby": ATTENTION_OUTPUT + FFN_OUTPUT}


class LoraAdapterConfig(AdapterConfig):
    """Low-rank adaptation: delta = B A x * alpha / rank, B zero-initialised."""

    rank: int = Field(default=8, gt=0, le=4096, description="Rank R of the update B A.")
    alpha: float = Field(default=16.0, gt=0, description="Scale numerator: the delta is multiplied by alpha / rank.")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout on the adapter's input during training.")
    init: Literal["zeros", "random"] = Field(
        default="zeros",
        description="zeros: B starts at 0, so the adapted model equals the base; random: B starts non-zero (tests).",
    )
    from_peft: str | None = Field(
        default=None,
        min_length=1,
        description="A PEFT LoRA directory (adapter_config.json + adapter_model.safetensors) to start from; its "
        "rank and alpha replace `rank` and `alpha`, and `target_modules` must select exactly its modules. In a "
        "`libraries.<label>` table: a directory of such folders, or a glob matching them; each folder becomes an "
        "adapter named after it, targeting exactly the modules it holds unless the table sets `target_modules`.",
    )

    @classmethod
    def library_members(cls, params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """One `lora` per PEFT folder of the library `from_peft` names, with the table's other params."""
        pattern = params.get("from_peft")
        if not isinstance(pattern, str):
            raise MtkitError("a library table needs from_peft: a directory of PEFT LoRA folders or a glob matching them", key="from_peft")
        where = f"from_peft {pattern!r}"
        members: dict[str, dict[str, Any]] = {}
        for folder in peft_format.library_folders(pattern, where):
            name = folder.name
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise MtkitError(
                    f"{where}: folder {str(folder)!r} cannot name an adapter ({name!r} is not a Python identifier); rename the folder",
                    key="from_peft",
                )
            described = peft_format.describe_lora(folder, f"{where}: folder {str(folder)!r}")
            member = {**params, "from_peft": str(folder)}
            if "target_modules" not in params:
                member["target_modules"] = described.modules
            members[name] = member
        return members


class BottleneckAdapterConfig(AdapterConfig):
    """A bottleneck after a sublayer's output y: delta = up(act(down(y))), added to y."""

    target_modules: list[str] = Field(
        default_factory=lambda: list(FFN_OUTPUT),
        min_length=1,
        description="Sites to adapt; set by `placement` (FFN outputs for pfeiffer) unless placement = 'custom'.",
    )
    placement: Literal["pfeiffer", "houlsby", "custom"] = Field(
        default="pfeiffer",
        description="pfeiffer: after each FFN output; houlsby: after each attention output and FFN output; "
        "custom: the sites in `target_modules`.",
    )
    reduction_factor: int = Field(default=16, gt=0, le=4096, description="Bottleneck size = site width // reduction_factor.")
    bottleneck_dim: int | None = Field(default=None, gt=0, le=65536, description="Bottleneck size; overrides reduction_factor.")
    non_linearity: Literal["relu", "gelu", "silu", "tanh"] = Field(default="relu", description="Activation between down and up.")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout on the bottleneck's output during training.")
    init: Literal["near_identity", "random"] = Field(
        default="near_identity",
        description="near_identity: the up-projection starts at 0, so the adapted model equals the base; "
        "random: it starts non-zero (tests).",
    )

    @model_validator(mode="before")
    @classmethod
    def _placement_sites(cls, data: Any) -> Any:
        # Placement names sites for the user; explicit target_modules need placement = "custom".
        if not isinstance(data, dict):
            return data
        placement = data.get("placement", "pfeiffer")
        if placement in PLACEMENTS:
            if "target_modules" in data and list(data["target_modules"]) != PLACEMENTS[placement]:  # equal: a dumped config
                raise ValueError(f"target_modules is set by placement {placement!r}; use placement = 'custom' to choose sites")
            data = {**data, "target_modules": list(PLACEMENTS[placement])}
        elif placement == "custom" and "target_modules" not in data:
            raise ValueError("placement 'custom' needs target_modules (the sites to adapt)")
        return data


class HyperLoraAdapterConfig(AdapterConfig):
    """LoRA matrices generated per input by a hypernetwork from a context embedding (TaskWeaver)."""

    rank: int = Field(default=4, gt=0, le=256, description="Rank R of each generated update B A.")
    alpha: float = Field(default=8.0, gt=0, description="Scale numerator: the delta is multiplied by alpha / rank.")
    hidden_dim: int = Field(default=64, gt=0, le=8192, description="Width of the hypernetwork's hidden layer.")
    embedding_dim: int = Field(default=32, gt=0, le=4096, description="Size of the learned layer and site embeddings.")
    source: RepresentationSource = "embeddings"
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout on the hypernetwork's hidden layer during training.")
    init: Literal["zeros", "random"] = Field(
        default="zeros",
        description="zeros: the generator of B starts at 0, so the adapted model equals the base; random: non-zero (tests).",
    )


def check_top_k(top_k: int | None, num_experts: int) -> None:
    """A mixture applies at most all of its experts to a token."""
    if top_k is not None and top_k > num_experts:
        raise ValueError(f"top_k {top_k} exceeds num_experts {num_experts}; lower top_k or raise num_experts")


class MixLoraAdapterConfig(AdapterConfig):
    """Mixture of LoRA experts per site (MixLoRA): a token router picks the top-k of N LoRAs for each token."""

    aux_loss_names: ClassVar[tuple[str, ...]] = ("expert_balance",)

    rank: int = Field(default=8, gt=0, le=4096, description="Rank R of each expert's update B A.")
    alpha: float = Field(default=16.0, gt=0, description="Scale numerator: each expert's delta is multiplied by alpha / rank.")
    num_experts: int = Field(default=8, ge=2, le=256, description="LoRA experts N at each site.")
    top_k: int | None = Field(
        default=2,
        gt=0,
        description="Experts applied to each token: the router's k most probable, their probabilities renormalised to "
        "sum to 1; computed only for the tokens routed to them, so the cost follows k, not N. None: every expert, "
        "weighted by the router's softmax (dense).",
    )
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout on the experts' input during training (the router sees it unchanged).")
    init: Literal["zeros", "random"] = Field(
        default="zeros",
        description="zeros: every expert's B starts at 0, so the adapted model equals the base; random: B starts non-zero (tests).",
    )

    @model_validator(mode="after")
    def _top_k_fits(self) -> MixLoraAdapterConfig:
        check_top_k(self.top_k, self.num_experts)
        return self


class HydraLoraAdapterConfig(AdapterConfig):
    """One shared down-projection A and N up-projection heads B per site (HydraLoRA), mixed per token by a router."""

    aux_loss_names: ClassVar[tuple[str, ...]] = ("expert_balance",)

    rank: int = Field(default=8, gt=0, le=4096, description="Rank R of the shared A and of each head B.")
    alpha: float = Field(default=16.0, gt=0, description="Scale numerator: the delta is multiplied by alpha / rank.")
    num_experts: int = Field(default=4, ge=2, le=256, description="B heads N at each site.")
    top_k: int | None = Field(
        default=None,
        gt=0,
        description="Heads applied to each token: None (the HydraLoRA design) mixes every head by the router's softmax; "
        "k keeps the k most probable, renormalised, computed only for the tokens routed to them.",
    )
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout on the shared A's input during training (the router sees it unchanged).")
    init: Literal["zeros", "random"] = Field(
        default="zeros",
        description="zeros: every head B starts at 0, so the adapted model equals the base; random: the heads start non-zero (tests).",
    )

    @model_validator(mode="after")
    def _top_k_fits(self) -> HydraLoraAdapterConfig:
        check_top_k(self.top_k, self.num_experts)
        return self
