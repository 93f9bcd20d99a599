"""The PEFT LoRA on-disk format: a folder holding adapter_config.json + adapter_model.safetensors.

mtkit site names are module paths inside the Backbone module, whose Hugging Face model sits at the path the
backbone declares (`HfModelBackbone.hf_model_path()`); PEFT keys are `base_model.model.<HF module path>.lora_A.weight`.
Reading a folder's description (`describe_lora`) and finding the folders of a library (`library_folders`) never
import torch, so a recipe that imports a library validates fast; `read_lora` and `write_lora` move the tensors.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtkit.api.errors import MtkitError

if TYPE_CHECKING:
    from torch import Tensor

    from mtkit.api.interfaces import Backbone

__all__ = [
    "PREFIX",
    "LoraFolder",
    "describe_lora",
    "library_folders",
    "lora_config",
    "peft_module",
    "read_lora",
    "site_to_peft",
    "write_lora",
]

PREFIX = "base_model.model."
CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"
_UNSUPPORTED = {"use_dora": False, "use_rslora": False, "fan_in_fan_out": False, "bias": "none"}


def site_to_peft(site: str, model_path: str) -> str:
    """The PEFT module key of a site (a module path inside the backbone, whose HF model sits at `model_path`)."""
    if not site.startswith(model_path + "."):
        raise MtkitError(f"site {site!r} is not inside the backbone's Hugging Face model (at {model_path!r}); PEFT cannot address it")
    return PREFIX + site[len(model_path) + 1 :]


def peft_module(key: str) -> str:
    """A PEFT module key -> the module path inside the HF model."""
    return key.removeprefix(PREFIX)


@dataclass(frozen=True)
class LoraFolder:
    """What a PEFT LoRA folder holds, read without loading its tensors.

    Attributes:
        path: The folder.
        config: Its adapter_config.json.
        shapes: Per module path inside the HF model, the shapes of (A (R, Din), B (Dout, R)).
    """

    path: Path
    config: dict[str, Any]
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]

    @property
    def modules(self) -> list[str]:
        return sorted(self.shapes)


def _checked_config(folder: Path, where: str) -> dict[str, Any]:
    config_file, weights_file = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_file.is_file():
        raise MtkitError(f"{where}: no {CONFIG_FILE} there; point it at a PEFT LoRA directory (saved by save_pretrained or `mtkit export`)")
    if not weights_file.is_file():
        pickled = (folder / "adapter_model.bin").is_file()
        extra = " (adapter_model.bin is pickle, which mtkit never loads; re-save it with safe_serialization=True)" if pickled else ""
        raise MtkitError(f"{where}: no {WEIGHTS_FILE} there{extra}")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise MtkitError(f"{where}: {config_file} is not valid JSON ({exc})") from None
    if config.get("peft_type", "LORA") != "LORA":
        raise MtkitError(f"{where}: peft_type is {config.get('peft_type')!r}; only LoRA adapters (peft_type LORA) can be read")
    for key, plain in _UNSUPPORTED.items():
        if config.get(key, plain) not in (plain, None):
            raise MtkitError(f"{where}: {key} = {config[key]!r} in {config_file} is not supported (mtkit reads plain LoRA: {key} = {plain!r})")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise MtkitError(f"{where}: per-module rank_pattern/alpha_pattern in {config_file} are not supported (mtkit reads one rank and alpha for all modules)")
    return config  # type: ignore[no-any-return]


def _pairs(keys: list[str], folder: Path, where: str) -> dict[str, dict[str, str]]:
    """{module path: {"lora_A": key, "lora_B": key}} from the tensor names of adapter_model.safetensors."""
    pairs: dict[str, dict[str, str]] = {}
    for key in keys:
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in key:
                pairs.setdefault(peft_module(key.split(marker)[0]), {})[part] = key
                break
        else:
            raise MtkitError(f"{where}: unexpected tensor {key!r} in {folder / WEIGHTS_FILE} (only lora_A/lora_B weights import)")
    for module, pair in pairs.items():
        if set(pair) != {"lora_A", "lora_B"}:
            raise MtkitError(f"{where}: module {module!r} in {folder / WEIGHTS_FILE} lacks lora_A or lora_B")
    return pairs


def describe_lora(path: str | Path, where: str) -> LoraFolder:
    """A PEFT LoRA folder's config and per-module shapes, read from the safetensors header (no tensor is loaded).

    `where` starts every error message (`from_peft 'lib/a'`).
    """
    from safetensors import safe_open

    folder = Path(path).expanduser()
    config = _checked_config(folder, where)
    with safe_open(str(folder / WEIGHTS_FILE), framework="numpy") as f:
        keys = list(f.keys())
        shapes = {key: tuple(f.get_slice(key).get_shape()) for key in keys}
    pairs = _pairs(keys, folder, where)
    return LoraFolder(folder, config, {m: (shapes[p["lora_A"]], shapes[p["lora_B"]]) for m, p in pairs.items()})


def read_lora(path: str | Path, where: str) -> tuple[dict[str, Any], dict[str, tuple[Tensor, Tensor]]]:
    """A PEFT LoRA directory -> (its config, {module path inside the HF model: (A (R, Din), B (Dout, R))})."""
    from safetensors.torch import load_file

    folder = Path(path).expanduser()
    config = _checked_config(folder, where)
    tensors = load_file(str(folder / WEIGHTS_FILE))
    pairs = _pairs(list(tensors), folder, where)
    return config, {module: (tensors[p["lora_A"]], tensors[p["lora_B"]]) for module, p in pairs.items()}


def library_folders(pattern: str, where: str) -> list[Path]:
    """The PEFT LoRA folders of a library, sorted by name: a directory's subfolders that hold adapter_config.json,
    or the folders a glob pattern (`lib/*`, `loras/task_?`) matches, each of which must hold one."""
    expanded = str(Path(pattern).expanduser())
    if glob.has_magic(expanded):
        matched = sorted(Path(p) for p in glob.glob(expanded) if Path(p).is_dir())
        if not matched:
            raise MtkitError(f"{where}: the pattern {pattern!r} matches no folder; give a directory of PEFT LoRA folders or a glob that matches them")
        stray = [p for p in matched if not (p / CONFIG_FILE).is_file()]
        if stray:
            raise MtkitError(f"{where}: {str(stray[0])!r}, matched by {pattern!r}, holds no {CONFIG_FILE}; narrow the pattern to PEFT LoRA folders")
        return matched
    root = Path(expanded)
    if not root.is_dir():
        raise MtkitError(f"{where}: {pattern!r} is not a directory; give a directory of PEFT LoRA folders (e.g. written by `mtkit export`) or a glob")
    if (root / CONFIG_FILE).is_file():
        raise MtkitError(f"{where}: {pattern!r} is itself one PEFT adapter; a library is a directory of such folders (or import it alone with an adapter's from_peft)")
    found = sorted(p for p in root.iterdir() if p.is_dir() and (p / CONFIG_FILE).is_file())
    if not found:
        raise MtkitError(f"{where}: {pattern!r} holds no PEFT LoRA folder (a subfolder with {CONFIG_FILE}); export one with `mtkit export RUN {pattern}`")
    return found


def lora_config(
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


def write_lora(
    out_dir: Path, weights: Mapping[str, tuple[Tensor, Tensor]], *, rank: int, alpha: float, dropout: float, backbone: Backbone
) -> None:
    """Write {site: (A (R, Din), B (Dout, R))}, delta = B A x * alpha / rank, as a PEFT LoRA folder for `backbone`'s
    Hugging Face model, which `peft.PeftModel.from_pretrained(hf_model, out_dir)` loads."""
    from safetensors.torch import save_file

    from mtkit.api.interfaces import HfModelBackbone

    if not isinstance(backbone, HfModelBackbone):
        raise MtkitError(f"backbone {backbone.name!r} does not wrap a Hugging Face model, so PEFT cannot load its adapters")
    model_path = backbone.hf_model_path()
    hf_config = getattr(backbone.get_submodule(model_path), "config", None)
    config = lora_config(
        rank=rank,
        alpha=alpha,
        dropout=dropout,
        sites=list(weights),
        model_path=model_path,
        base_model=getattr(hf_config, "_name_or_path", None) or None,
        task_type="CAUSAL_LM" if backbone.generative else None,
    )
    tensors = {}
    for site, (a, b) in weights.items():
        key = site_to_peft(site, model_path)
        tensors[f"{key}.lora_A.weight"] = a.detach().cpu().contiguous()
        tensors[f"{key}.lora_B.weight"] = b.detach().cpu().contiguous()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_file(tensors, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})
