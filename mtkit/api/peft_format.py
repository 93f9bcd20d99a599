"""The PEFT LoRA on-disk format: a folder holding adapter_config.json + adapter_model.safetensors.

mtkit site names are module paths inside the Backbone module, whose Hugging Face model sits at the path the
backbone declares (`HfModelBackbone.hf_model_path()`); PEFT keys are `base_model.model.<HF module path>.lora_A.weight`.
Reading a folder's description (`describe_lora`) and finding the folders of a library (`library_folders`) never
import torch, so a recipe that imports a library validates fast; `read_lora` and `write_lora` move the tensors.
"""

from __future__ import annotations

import glob
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mtkit.api.errors import MtkitError

if TYPE_CHECKING:
    from torch import Tensor

    from mtkit.api.interfaces import Backbone

__all__ = [
    "PREFIX",
    "PeftHead",
    "PeftHeadWeights",
    "check_base_model",
    "base_model_name",
    "TASK_MODELS",
    "LoraFolder",
    "LoraTensors",
    "describe_lora",
    "library_folders",
    "lora_config",
    "lora_scale",
    "peft_module",
    "read_lora",
    "site_to_peft",
    "task_prefix",
    "write_lora",
]

PREFIX = "base_model.model."
CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"
_UNSUPPORTED = {"fan_in_fan_out": False, "bias": "none"}
TASK_MODELS = {
    "FEATURE_EXTRACTION": "AutoModel",
    "SEQ_CLS": "AutoModelForSequenceClassification",
    "TOKEN_CLS": "AutoModelForTokenClassification",
    "QUESTION_ANS": "AutoModelForQuestionAnswering",
    "CAUSAL_LM": "AutoModelForCausalLM",
}
"""PEFT task types mtkit reads and writes, with the transformers auto class of each task model."""


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
        shapes: Per module path inside the base model, the shapes of (A (R, Din), B (Dout, R)).
        prefix: Where a task model (PEFT task type SEQ_CLS, TOKEN_CLS, QUESTION_ANS, CAUSAL_LM) holds its base model
            (its `base_model_prefix`: 'bert', 'roberta', 'model' ...), stripped from the module paths; None when the
            adapter was saved on a base model itself.
        head: The shapes of the tensors PEFT saved through `modules_to_save` (a task head), by path inside the task model.
    """

    path: Path
    config: dict[str, Any]
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]
    prefix: str | None = None
    head: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def modules(self) -> list[str]:
        return sorted(self.shapes)


def lora_scale(config: Mapping[str, Any]) -> float:
    """The factor PEFT multiplies B A x by: lora_alpha / r, or lora_alpha / sqrt(r) for rsLoRA (use_rslora)."""
    rank, alpha = int(config["r"]), float(config.get("lora_alpha", 8))
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


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
    method = config.get("peft_type", "LORA")
    if method != "LORA":
        raise MtkitError(
            f"{where}: {config_file} holds a {method} adapter (peft_type {method!r}), which mtkit cannot represent; "
            "only LoRA adapters (peft_type 'LORA') import"
        )
    if config.get("use_dora"):
        raise MtkitError(
            f"{where}: {config_file} holds a DoRA adapter (use_dora = true), whose weight-decomposed update mtkit cannot "
            "represent; train it as a plain LoRA (use_dora=False) to import it"
        )
    task_type = config.get("task_type")
    if task_type is not None and task_type not in TASK_MODELS:
        raise MtkitError(
            f"{where}: task_type {task_type!r} in {config_file} is not one mtkit imports (known: {', '.join(sorted(TASK_MODELS))})"
        )
    for key, plain in _UNSUPPORTED.items():
        if config.get(key, plain) not in (plain, None):
            raise MtkitError(f"{where}: {key} = {config[key]!r} in {config_file} is not supported (mtkit reads plain LoRA: {key} = {plain!r})")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise MtkitError(f"{where}: per-module rank_pattern/alpha_pattern in {config_file} are not supported (mtkit reads one rank and alpha for all modules)")
    return config  # type: ignore[no-any-return]


def _saved_module(module: str, targets: list[str]) -> bool:
    """Whether a module path is one of the modules_to_save (PEFT matches them by the end of the path) or inside one."""
    return any(module == t or module.endswith("." + t) or module.startswith(t + ".") or f".{t}." in module for t in targets)


def _split(keys: list[str], config: Mapping[str, Any], folder: Path, where: str) -> tuple[str | None, dict[str, dict[str, str]], list[str]]:
    """(the task model's base prefix, {module path in the base model: {"lora_A": key, "lora_B": key}}, head tensor keys)."""
    pairs: dict[str, dict[str, str]] = {}
    head = []
    saved = list(config.get("modules_to_save") or [])
    for key in keys:
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in key:
                pairs.setdefault(peft_module(key.split(marker)[0]), {})[part] = key
                break
        else:
            module = peft_module(key).rsplit(".", 1)[0]
            if not _saved_module(module, saved):
                raise MtkitError(
                    f"{where}: unexpected tensor {key!r} in {folder / WEIGHTS_FILE} (only lora_A/lora_B weights and the "
                    f"modules listed in modules_to_save ({saved}) import); re-save the adapter without it"
                )
            head.append(key)
    for module, pair in pairs.items():
        if set(pair) != {"lora_A", "lora_B"}:
            raise MtkitError(f"{where}: module {module!r} in {folder / WEIGHTS_FILE} lacks lora_A or lora_B")
    firsts = {m.split(".", 1)[0] for m in pairs}
    prefix = None
    if config.get("task_type") not in (None, "FEATURE_EXTRACTION") and len(firsts) == 1 and all("." in m for m in pairs):
        prefix = firsts.pop()
        pairs = {m.split(".", 1)[1]: p for m, p in pairs.items()}
    return prefix, pairs, head


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
    prefix, pairs, head = _split(keys, config, folder, where)
    return LoraFolder(
        folder, config, {m: (shapes[p["lora_A"]], shapes[p["lora_B"]]) for m, p in pairs.items()}, prefix, {peft_module(k): shapes[k] for k in head}
    )


@dataclass(frozen=True)
class LoraTensors:
    """A PEFT LoRA folder's tensors: `modules` by module path inside the base model (A (R, Din), B (Dout, R)), and
    the head PEFT saved through modules_to_save by tensor path inside the task model (`classifier.weight`)."""

    config: dict[str, Any]
    modules: dict[str, tuple[Tensor, Tensor]]
    prefix: str | None
    head: dict[str, Tensor]


def read_lora(path: str | Path, where: str) -> LoraTensors:
    """A PEFT LoRA directory's config and tensors."""
    from safetensors.torch import load_file

    folder = Path(path).expanduser()
    config = _checked_config(folder, where)
    tensors = load_file(str(folder / WEIGHTS_FILE))
    prefix, pairs, head = _split(list(tensors), config, folder, where)
    modules = {module: (tensors[p["lora_A"]], tensors[p["lora_B"]]) for module, p in pairs.items()}
    return LoraTensors(config, modules, prefix, {peft_module(k): tensors[k] for k in head})


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


def task_prefix(backbone: Backbone, task_type: str | None) -> str:
    """What goes between PEFT's `base_model.model.` and a module path of the backbone's HF model for a PEFT adapter
    of `task_type`: a task model holds the base model under its `base_model_prefix` ('bert.'), so an encoder
    backbone's modules move there; a causal LM backbone already is the task model ('')."""
    hf_model = backbone.get_submodule(backbone.hf_model_path())  # type: ignore[attr-defined]
    wraps = task_type not in (None, "FEATURE_EXTRACTION") and getattr(hf_model, "base_model", hf_model) is hf_model
    return f"{hf_model.base_model_prefix}." if wraps and getattr(hf_model, "base_model_prefix", "") else ""


def lora_config(
    *,
    rank: int,
    alpha: float,
    dropout: float,
    sites: list[str],
    model_path: str,
    base_model: str | None,
    task_type: str | None,
    prefix: str = "",
    modules_to_save: list[str] | None = None,
) -> dict[str, Any]:
    """An adapter_config.json that `peft.PeftConfig.from_pretrained` reads (exact module paths as targets)."""
    return {
        "peft_type": "LORA",
        "task_type": task_type,
        "base_model_name_or_path": base_model,
        "r": rank,
        "lora_alpha": alpha,
        "lora_dropout": dropout,
        "target_modules": sorted(prefix + site_to_peft(s, model_path)[len(PREFIX) :] for s in sites),
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": modules_to_save,
    }


def base_model_name(backbone: Backbone) -> str | None:
    """The name or path the backbone's HF model was loaded from (what adapter_config.json's base_model_name_or_path holds)."""
    hf_config = getattr(backbone.get_submodule(backbone.hf_model_path()), "config", None)  # type: ignore[attr-defined]
    return getattr(hf_config, "_name_or_path", None) or None


def write_lora(
    out_dir: Path,
    weights: Mapping[str, tuple[Tensor, Tensor]],
    *,
    rank: int,
    alpha: float,
    dropout: float,
    backbone: Backbone,
    task_type: str | None = None,
    head: Mapping[str, Tensor] | None = None,
    modules_to_save: list[str] | None = None,
) -> None:
    """Write {site: (A (R, Din), B (Dout, R))}, delta = B A x * alpha / rank, as a PEFT LoRA folder for `backbone`'s
    Hugging Face model, which `peft.PeftModel.from_pretrained(hf_model, out_dir)` loads.

    With `task_type` (a key of TASK_MODELS) the folder is for that task model: module paths gain its base model
    prefix, and `head` ({tensor path inside the task model: tensor}) is saved as PEFT saves the `modules_to_save`.
    """
    from safetensors.torch import save_file

    from mtkit.api.interfaces import HfModelBackbone

    if not isinstance(backbone, HfModelBackbone):
        raise MtkitError(f"backbone {backbone.name!r} does not wrap a Hugging Face model, so PEFT cannot load its adapters")
    model_path = backbone.hf_model_path()
    task_type = task_type or ("CAUSAL_LM" if backbone.generative else None)
    prefix = task_prefix(backbone, task_type)
    head = dict(head or {})
    config = lora_config(
        rank=rank,
        alpha=alpha,
        dropout=dropout,
        sites=list(weights),
        model_path=model_path,
        base_model=base_model_name(backbone),
        task_type=task_type,
        prefix=prefix,
        modules_to_save=modules_to_save if head else None,
    )
    tensors = {}
    for site, (a, b) in weights.items():
        key = PREFIX + prefix + site_to_peft(site, model_path)[len(PREFIX) :]
        tensors[f"{key}.lora_A.weight"] = a.detach().cpu().contiguous()
        tensors[f"{key}.lora_B.weight"] = b.detach().cpu().contiguous()
    for name, tensor in head.items():
        tensors[PREFIX + name] = tensor.detach().cpu().contiguous()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_file(tensors, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})


@dataclass(frozen=True)
class PeftHeadWeights:
    """A head as transformers' task model for a PEFT task type holds it.

    Attributes:
        task_type: The PEFT task type (a key of TASK_MODELS).
        tensors: The head's tensors by path inside the task model (`classifier.weight`); empty when the task model's
            head is part of the base weights (a causal LM's lm_head) or there is none (FEATURE_EXTRACTION).
        modules_to_save: The task model's modules PEFT saves with the adapter for these tensors.
    """

    task_type: str
    tensors: dict[str, Tensor]
    modules_to_save: list[str]


@runtime_checkable
class PeftHead(Protocol):
    """Capability: a head that a transformers task model can hold, so PEFT folders carry it both ways."""

    def peft_head(self, prefix: str) -> PeftHeadWeights:
        """This head as the task model holds it; `prefix` is the task model's base prefix with its dot ('bert.', '').

        Raises:
            MtkitError: the head's settings have no transformers counterpart (the message says which to change).
        """
        ...

    def load_peft_head(self, tensors: Mapping[str, Tensor], prefix: str) -> None:
        """Load the tensors PEFT saved through modules_to_save (by path inside the task model) into this head.

        Raises:
            MtkitError: a tensor this head cannot hold, or one whose shape does not fit (named, with the fix).
        """
        ...


def _name_key(name: str | None) -> str:
    return Path(str(name).rstrip("/")).name.lower() if name else ""


def check_base_model(config: Mapping[str, Any], prefix: str | None, backbone: Backbone, where: str) -> None:
    """An imported adapter's adapter_config.json against the backbone: the base model it names and the base prefix
    of the task model it was saved from must be the backbone's (the tensor shapes are checked when they load)."""
    hf_model = backbone.get_submodule(backbone.hf_model_path())  # type: ignore[attr-defined]
    named = config.get("base_model_name_or_path")
    ours = [getattr(getattr(backbone, "config", None), "model", None), base_model_name(backbone)]
    if named and not any(_name_key(named) == _name_key(o) or str(named) == str(o) for o in ours if o):
        raise MtkitError(
            f"{where}: adapter_config.json names base model {named!r} but the backbone is {ours[0] or ours[1]!r}; import "
            "adapters trained on the backbone's model, or set backbone.model to the model they were trained on"
        )
    expected = getattr(hf_model, "base_model_prefix", "")
    if prefix is not None and prefix != expected and getattr(hf_model, "base_model", hf_model) is hf_model:
        raise MtkitError(
            f"{where}: the adapter's modules sit under {prefix + '.'!r} in its task model, but the backbone's "
            f"{type(hf_model).__name__} is a {expected + '.'!r} model; it was trained on another architecture"
        )
