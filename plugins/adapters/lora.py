"""`lora`: low-rank adaptation of Linear sites, batched across adapters in rank space."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkit import Adapter, Backbone, ForwardContext, MtkitError, Site

from ._low_rank import rank_space_weights
from ._peft import peft_lora_config, peft_lora_tensors, read_peft_lora
from .config import LoraAdapterConfig


class LoraAdapter(Adapter):
    """Low-rank adaptation: delta = B A x * alpha / rank, B zero-initialised (PEFT's conventions)."""

    name = "lora"
    config_class = LoraAdapterConfig
    config: LoraAdapterConfig
    export_formats = ("peft",)

    def __init__(self, config: LoraAdapterConfig, *, sites: Mapping[str, Site], context_size: int) -> None:
        super().__init__(config, sites=sites, context_size=context_size)
        self.rank, self.alpha = config.rank, config.alpha
        imported = None
        if config.from_peft is not None:
            peft_config, imported = read_peft_lora(config.from_peft)
            self.rank, self.alpha = int(peft_config["r"]), float(peft_config["lora_alpha"])
            _check_peft_sites(config.from_peft, set(sites), set(imported))
        self.scale = self.alpha / self.rank
        self.lora_a = nn.ParameterDict()
        self.lora_b = nn.ParameterDict()
        for name, site in sites.items():
            a = torch.empty(self.rank, site.in_features)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # PEFT's default for A
            b = torch.zeros(site.out_features, self.rank)
            if config.init == "random":
                nn.init.normal_(b, std=0.02)
            if imported is not None:
                a, b = imported[name]
                if tuple(a.shape) != (self.rank, site.in_features) or tuple(b.shape) != (site.out_features, self.rank):
                    raise MtkitError(
                        f"from_peft {config.from_peft!r}: {name} has A {tuple(a.shape)}, B {tuple(b.shape)} but the "
                        f"backbone's Linear is {site.in_features}->{site.out_features} at rank {self.rank}; was it trained on this model?"
                    )
                a, b = a.float().clone(), b.float().clone()
            self.lora_a[self.site_key(name)] = nn.Parameter(a)
            self.lora_b[self.site_key(name)] = nn.Parameter(b)

    def weights(self, site: str) -> tuple[Tensor, Tensor]:
        """(A (R, Din), B (Dout, R)) at a site."""
        key = self.site_key(site)
        return self.lora_a[key], self.lora_b[key]

    def _dropout(self, x: Tensor) -> Tensor:
        p = self.config.dropout
        return F.dropout(x, p, True) if p > 0 and self.training else x

    def delta(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor:
        a, b = self.weights(site)
        return F.linear(F.linear(self._dropout(x), a), b) * self.scale

    @classmethod
    def mix(
        cls, adapters: Sequence[Adapter], site: str, x: Tensor, y: Tensor, weights: Tensor, ctx: ForwardContext
    ) -> Tensor:
        """All K adapters as one LoRA of rank sum(R_k): x -> (B, T, sum R) -> scaled by w_k -> Dout.

        Weighting in rank space never materialises the K deltas, so K adapters cost about
        one LoRA of rank K*R: two matmuls whatever the weights (per sample or per token).
        A single adapter (the common oracle case) skips the concatenations entirely.
        """
        loras: list[LoraAdapter] = list(adapters)  # type: ignore[arg-type]
        x = loras[0]._dropout(x)
        w = rank_space_weights(weights.to(x.dtype), [lora.scale for lora in loras], [lora.rank for lora in loras])
        if len(loras) == 1:
            a, b = loras[0].weights(site)
            return F.linear(F.linear(x, a) * w, b)
        a_cat = torch.cat([lora.weights(site)[0] for lora in loras])  # (sum R, Din)
        b_cat = torch.cat([lora.weights(site)[1] for lora in loras], dim=1)  # (Dout, sum R)
        return F.linear(F.linear(x, a_cat) * w, b_cat)

    @classmethod
    def stack(cls, adapters: Sequence[Adapter], site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor:
        """Every adapter's delta in one pass.  -> (B, T, K, Dout)"""
        loras: list[LoraAdapter] = list(adapters)  # type: ignore[arg-type]
        if len({lora.rank for lora in loras}) > 1:
            return super().stack(adapters, site, x, y, ctx)
        k, r = len(loras), loras[0].rank
        a_cat = torch.cat([lora.weights(site)[0] for lora in loras])  # (K R, Din)
        b_stack = torch.stack([lora.weights(site)[1] * lora.scale for lora in loras])  # (K, Dout, R)
        x = loras[0]._dropout(x)
        h = F.linear(x, a_cat).unflatten(-1, (k, r))  # (B, T, K, R)
        return torch.einsum("btkr,kor->btko", h, b_stack)

    @torch.no_grad()
    def merge(self, site: str, linear: nn.Linear) -> None:
        a, b = self.weights(site)
        linear.weight += (b @ a * self.scale).to(linear.weight.dtype)

    @torch.no_grad()
    def unmerge(self, site: str, linear: nn.Linear) -> None:
        a, b = self.weights(site)
        linear.weight -= (b @ a * self.scale).to(linear.weight.dtype)

    def export(self, format: str, out_dir: Path, *, backbone: Backbone) -> None:
        """Write this LoRA as a PEFT adapter directory that `peft.PeftModel.from_pretrained` loads."""
        if format != "peft":
            raise MtkitError(f"--format {format!r}: lora exports only to 'peft'")
        from safetensors.torch import save_file

        hf_config = getattr(getattr(backbone, "model", None), "config", None)
        config = peft_lora_config(
            rank=self.rank,
            alpha=self.alpha,
            dropout=self.config.dropout,
            sites=self.site_names,
            base_model=getattr(hf_config, "_name_or_path", None) or None,
            task_type="CAUSAL_LM" if backbone.generative else None,
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        save_file(peft_lora_tensors({s: self.weights(s) for s in self.site_names}), str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})


def _check_peft_sites(path: str, selected: set[str], imported: set[str]) -> None:
    if selected == imported:
        return
    targets = sorted({name.rsplit(".", 1)[-1] for name in imported})
    missing, extra = sorted(imported - selected), sorted(selected - imported)
    detail = f"missing {missing[:2]}" if missing else f"not in the PEFT adapter {extra[:2]}"
    raise MtkitError(
        f"from_peft {path!r}: target_modules selects other sites than the PEFT adapter holds ({detail}); "
        f"set target_modules = {targets!r} (and layers) to match it"
    )
