"""hf_encoder and hf_causal_lm: weight dtype on load, and config_overrides that clash with their own keys or that the model refuses."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, BertConfig, BertModel, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from mtkit import MtkitError, Registry
from mtkit.testing import tiny_tokenizer_path
from tests.conftest import write_toml
from tests.core.test_cli import mtkit


def _bert() -> PreTrainedModel:
    return BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64))


def _llama() -> PreTrainedModel:
    config = LlamaConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, intermediate_size=64, vocab_size=30522
    )
    return LlamaForCausalLM(config)


BACKBONES = {"hf_encoder": _bert, "hf_causal_lm": _llama}


def _half_checkpoint(tmp_path: Path, build: Any) -> Path:
    """A float16 checkpoint (common on the hub) with a real tokenizer, saved to a local folder."""
    build().half().save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_tokenizer_path()).save_pretrained(tmp_path)
    assert {t.dtype for t in load_file(tmp_path / "model.safetensors").values()} == {torch.float16}
    return tmp_path


@pytest.mark.parametrize("kind", sorted(BACKBONES))
@pytest.mark.parametrize(("overrides", "dtype"), [({}, torch.float32), ({"dtype": "bfloat16"}, torch.bfloat16)])
def test_weights_load_in_float32_unless_config_overrides_sets_dtype(
    tmp_path: Path, registry: Registry, kind: str, overrides: dict[str, Any], dtype: torch.dtype
) -> None:
    path = _half_checkpoint(tmp_path, BACKBONES[kind])
    cls = registry.component_class("backbone", kind)
    backbone = cls(cls.config_class.model_validate({"model": str(path), "config_overrides": overrides}))
    assert {p.dtype for p in backbone.parameters()} == {dtype}
    stored = load_file(path / "model.safetensors")
    name, param = next((n, p) for n, p in backbone.model.named_parameters() if n in stored)
    assert torch.equal(param, stored[name].to(dtype))  # the checkpoint's weights, not a random init


@pytest.mark.parametrize("kind", sorted(BACKBONES))
def test_revision_in_config_overrides_is_a_recipe_error(tmp_path: Path, tiny_recipe: dict[str, Any], kind: str) -> None:
    recipe = copy.deepcopy(tiny_recipe)
    recipe["backbone"] = {"type": kind, "model": "somewhere", "config_overrides": {"revision": "main"}}
    path = write_toml(tmp_path / "bad.toml", recipe)
    result = mtkit("validate", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"{path}: backbone.config_overrides:" in result.stderr and "own `revision` key" in result.stderr, result.stderr


@pytest.mark.parametrize("kind", sorted(BACKBONES))
@pytest.mark.parametrize(("overrides", "named"), [({"hidden_sizee": 32}, "hidden_sizee"), ({"dtype": "float99"}, "float99")])
def test_config_overrides_the_model_refuses_stop_the_run_with_the_key_path(
    tmp_path: Path, tiny_recipe: dict[str, Any], kind: str, overrides: dict[str, Any], named: str
) -> None:
    recipe = copy.deepcopy(tiny_recipe)
    recipe["backbone"] = {"type": kind, "model": str(_half_checkpoint(tmp_path / "model", BACKBONES[kind])), "config_overrides": overrides}
    recipe["run"]["output_dir"] = str(tmp_path / "run")
    path = write_toml(tmp_path / "r.toml", recipe)
    result = mtkit("run", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"{path}: backbone.config_overrides: the model would not load with them" in result.stderr and named in result.stderr, result.stderr


@pytest.mark.parametrize("kind", sorted(BACKBONES))
def test_random_init_refuses_an_override_that_is_not_a_config_field(tmp_path: Path, registry: Registry, kind: str) -> None:
    """from_config would build the default size and ignore the misspelled key."""
    path = _half_checkpoint(tmp_path, BACKBONES[kind])
    cls = registry.component_class("backbone", kind)
    config = cls.config_class.model_validate({"model": str(path), "random_init": True, "config_overrides": {"num_hidden_layer": 1}})
    with pytest.raises(MtkitError, match=r"^not a field .* did you mean 'num_hidden_layers'\?") as info:
        cls(config)
    assert info.value.key == "config_overrides.num_hidden_layer"  # the core puts the file and backbone. in front
    built = cls(cls.config_class.model_validate({"model": str(path), "random_init": True, "config_overrides": {"num_hidden_layers": 1}}))
    assert len(built.layers()) == 1
