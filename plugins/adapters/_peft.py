"""The PEFT LoRA on-disk format: adapter_config.json + adapter_model.safetensors.

mtkit site names are module paths inside the Backbone module, whose Hugging Face model sits at the
path the backbone declares (`HfModelBackbone.hf_model_path()`); PEFT keys are
`base_model.model.<HF module path>.lora_A.weight`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from mtkit import MtkitError

PREFIX = "base_model.model."
UNSUPPORTED = {"use_dora": False, "use_rslora": False, "fan_in_fan_out": False, "bias": "none"}


def site_to_peft(site: str, model_path: str) -> str:
    """The PEFT module key of a site (a module path inside the backbone, whose HF model sits at `model_path`)."""
    if not site.startswith(model_path + "."):
        raise MtkitError(f"site {site!r} is not inside the backbone's Hugging Face model (at {model_path!r}); PEFT cannot address it")
    return PREFIX + site[len(model_path) + 1 :]


def peft_module(key: str) -> str:
    """A PEFT module key -> the module path inside the HF model."""
    return key[len(PREFIX) :] if key.startswith(PREFIX) else key


def read_peft_lora(path: str) -> tuple[dict[str, Any], dict[str, tuple[Tensor, Tensor]]]:
    """A PEFT LoRA directory -> (its config, {module path inside the HF model: (A (R, Din), B (Dout, R))})."""
    from safetensors.torch import load_file

    folder = Path(path).expanduser()
    config_file, weights_file = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    where = f"from_peft {path!r}"
    if not config_file.is_file():
        raise MtkitError(f"{where}: no adapter_config.json there; point from_peft at a PEFT LoRA directory (saved by save_pretrained)")
    if not weights_file.is_file():
        extra = " (adapter_model.bin is pickle, which mtkit never loads; re-save it with safe_serialization=True)" if (folder / "adapter_model.bin").is_file() else ""
        raise MtkitError(f"{where}: no adapter_model.safetensors there{extra}")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("peft_type", "LORA") != "LORA":
        raise MtkitError(f"{where}: peft_type is {config.get('peft_type')!r}; only LORA adapters import as `lora`")
    for key, plain in UNSUPPORTED.items():
        if config.get(key, plain) not in (plain, None):
            raise MtkitError(f"{where}: {key} = {config[key]!r} is not supported by mtkit's lora (needs {key} = {plain!r})")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise MtkitError(f"{where}: per-module rank_pattern/alpha_pattern are not supported by mtkit's lora")
    tensors = load_file(str(weights_file))
    pairs: dict[str, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in key:
                pairs.setdefault(peft_module(key.split(marker)[0]), {})[part] = value
                break
        else:
            raise MtkitError(f"{where}: unexpected tensor {key!r} in adapter_model.safetensors (only lora_A/lora_B weights import)")
    weights = {}
    for site, pair in pairs.items():
        if set(pair) != {"lora_A", "lora_B"}:
            raise MtkitError(f"{where}: module {site!r} lacks lora_A or lora_B")
        weights[site] = (pair["lora_A"], pair["lora_B"])
    return config, weights


def peft_lora_config(
    *, rank: int, alpha: float, dropout: float, sites: list[str], model_path: str, base_model: str | None, task_type: str | None
) -> dict[str, Any]:
    """An adapter_config.json that `peft.PeftConfig.from_pretrained` reads (exact module paths as targets)."""
    return {
        "peft_type": "LORA",
        "task_type": task_type,
        "base_model_name_or_path": base_model,
        "r": rank,
        "lora_alpha": alpha,
        "lora_dropout": dropout,
        "target_modules": sorted(site_to_peft(s, model_path)[len(PREFIX) :] for s in sites),
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
    }


def peft_lora_tensors(weights: Mapping[str, tuple[Tensor, Tensor]], *, model_path: str) -> dict[str, Tensor]:
    out = {}
    for site, (a, b) in weights.items():
        key = site_to_peft(site, model_path)
        out[f"{key}.lora_A.weight"] = a.detach().cpu().contiguous()
        out[f"{key}.lora_B.weight"] = b.detach().cpu().contiguous()
    return out
