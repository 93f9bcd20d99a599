"""`lora`: low-rank adaptation of Linear sites, composed with other LoRAs in rank space (its factored form)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkit import Adapter, Backbone, ForwardContext, LowRank, MtkitError, Site, peft_format

from .config import LoraAdapterConfig


class LoraAdapter(Adapter):
    """Low-rank adaptation: delta = B A x * alpha / rank, B zero-initialised (PEFT's conventions)."""

    name = "lora"
    task_independent = True  # its deltas read the site input (and input representations), never task ids
    config_class = LoraAdapterConfig
    config: LoraAdapterConfig
    export_formats = ("peft",)

    def __init__(self, config: LoraAdapterConfig, *, sites: Mapping[str, Site], context_size: int) -> None:
        super().__init__(config, sites=sites, context_size=context_size)
        imported = None
        self.peft_source: peft_format.LoraTensors | None = None
        if config.from_peft is not None:
            self.peft_source = peft_format.read_lora(config.from_peft, f"from_peft {config.from_peft!r}")
            rank = int(self.peft_source.config["r"])
            # rsLoRA scales by alpha / sqrt(rank): the same delta as plain LoRA with alpha * sqrt(rank).
            config = _with_peft_rank(config, rank, peft_format.lora_scale(self.peft_source.config) * rank)
            self.config = config
            imported = _by_site(config.from_peft, sites, self.peft_source.modules)  # type: ignore[arg-type]
            self.peft_source = dataclasses.replace(self.peft_source, modules={})  # what the head import needs, not a second copy
        self.rank, self.alpha = config.rank, config.alpha
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

    def matrices(self, site: str) -> tuple[Tensor, Tensor]:
        """(A (R, Din), B (Dout, R)) at a site."""
        key = self.site_key(site)
        return self.lora_a[key], self.lora_b[key]

    def lora_factors(self, site: str) -> tuple[Tensor, Tensor, float]:
        """(A (R, Din), B (Dout, R), alpha / rank) at a site (`mtkit.LoraFactors`: merging and Arrow read them)."""
        a, b = self.matrices(site)
        return a, b, self.scale

    def _dropout(self, x: Tensor) -> Tensor:
        p = self.config.dropout
        return F.dropout(x, p, True) if p > 0 and self.training else x

    def delta(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor:
        a, b = self.matrices(site)
        return F.linear(F.linear(self._dropout(x), a), b) * self.scale

    @classmethod
    def low_rank(cls, adapters: Sequence[Adapter], site: str) -> LowRank:
        """delta_k = (dropout_k(x) A_k^T) (scale_k B_k)^T: K LoRAs mix in rank space like one LoRA of rank sum(R_k)."""
        loras: list[LoraAdapter] = list(adapters)  # type: ignore[arg-type]
        pairs = [lora.matrices(site) for lora in loras]
        return LowRank(
            reads="input",
            down=[a for a, _ in pairs],
            up=[(b * lora.scale).T for lora, (_, b) in zip(loras, pairs, strict=True)],
            dropout=[lora.config.dropout for lora in loras],
        )

    @torch.no_grad()
    def merge(self, site: str, linear: nn.Linear) -> None:
        a, b = self.matrices(site)
        linear.weight += (b @ a * self.scale).to(linear.weight.dtype)

    @torch.no_grad()
    def unmerge(self, site: str, linear: nn.Linear) -> None:
        a, b = self.matrices(site)
        linear.weight -= (b @ a * self.scale).to(linear.weight.dtype)

    def export(self, format: str, out_dir: Path, *, backbone: Backbone) -> None:
        """Write this LoRA as a PEFT adapter directory that `peft.PeftModel.from_pretrained` loads."""
        if format != "peft":
            raise MtkitError(f"--format {format!r}: lora exports only to 'peft'")
        weights = {s: self.matrices(s) for s in self.site_names}
        peft_format.write_lora(out_dir, weights, rank=self.rank, alpha=self.alpha, dropout=self.config.dropout, backbone=backbone)


def _with_peft_rank(config: LoraAdapterConfig, rank: int, alpha: float) -> LoraAdapterConfig:
    """The config with the PEFT folder's rank and alpha; a different rank or alpha set in the recipe is an error."""
    for key, value in (("rank", rank), ("alpha", alpha)):
        if key in config.model_fields_set and getattr(config, key) != value:
            raise MtkitError(
                f"{getattr(config, key)!r} differs from the PEFT adapter in from_peft {config.from_peft!r}, which has {value!r}; "
                f"leave {key} out (it is read from the adapter) or set it to {value!r}",
                key=key,
            )
    return config.model_copy(update={"rank": rank, "alpha": alpha})


def _by_site(path: str, sites: Mapping[str, Site], modules: Mapping[str, tuple[Tensor, Tensor]]) -> dict[str, tuple[Tensor, Tensor]]:
    """The PEFT adapter's (A, B) by site. PEFT names modules inside the transformers model, mtkit inside the
    backbone that wraps it, so a site matches the module its name ends with; both must cover the same modules."""
    found = {site: (m, modules[m]) for site in sites for m in modules if site == m or site.endswith("." + m)}
    matched = {m for m, _ in found.values()}
    if set(found) == set(sites) and matched == set(modules):
        return {site: pair for site, (_, pair) in found.items()}
    targets = sorted({name.rsplit(".", 1)[-1] for name in modules})
    missing, extra = sorted(set(modules) - matched), sorted(set(sites) - set(found))
    if missing:
        raise MtkitError(
            f"from_peft {path!r}: the PEFT adapter holds modules that no selected site of the backbone ends with (missing "
            f"{missing[:2]}); if it was trained on this model, set target_modules = {targets!r} (and layers) to select them",
            key="target_modules",
        )
    raise MtkitError(
        f"from_peft {path!r}: target_modules selects sites the PEFT adapter does not hold ({extra[:2]}); "
        f"set target_modules = {targets!r} (and layers) to match it",
        key="target_modules",
    )
