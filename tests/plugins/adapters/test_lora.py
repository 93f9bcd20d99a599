"""`lora` against hand-written maths and against the real `peft` library (numerics, import, export)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model

from mtkit import ForwardContext, MtkitError
from mtkit.testing.adapter import AdapterHarness
from tests.conftest import TINY_BERT, TINY_LLAMA

QV = {"hf_encoder": ["query", "value"], "hf_causal_lm": ["q_proj", "v_proj"]}


def test_lora_delta_matches_hand_written_formula(make_backbone: Callable[..., Any], make_adapter: Callable[..., Any]) -> None:
    backbone = make_backbone(TINY_BERT)
    lora = make_adapter("lora", backbone, rank=4, alpha=8.0, init="random", target_modules=["query"])
    site = lora.site_names[0]
    a, b = lora.lora_a[lora.site_key(site)], lora.lora_b[lora.site_key(site)]
    x = torch.randn(2, 3, 32)
    expected = torch.einsum("bti,ri,or->bto", x, a, b) * (8.0 / 4)
    torch.testing.assert_close(lora.delta(site, x, x, ForwardContext()), expected, atol=1e-6, rtol=1e-5)
    w = torch.tensor([[0.25], [2.0]])
    mixed = type(lora).mix([lora], site, x, x, w, ForwardContext())
    torch.testing.assert_close(mixed, expected * w[:, :, None], atol=1e-6, rtol=1e-5)


def test_lora_merge_folds_delta_into_weight(make_backbone: Callable[..., Any], make_adapter: Callable[..., Any]) -> None:
    backbone = make_backbone(TINY_BERT)
    lora = make_adapter("lora", backbone, rank=2, alpha=2.0, init="random", target_modules=["query"])
    site = lora.site_names[0]
    linear = backbone.get_submodule(site)
    w0 = linear.weight.detach().clone()
    lora.merge(site, linear)
    a, b = lora.matrices(site)
    torch.testing.assert_close(linear.weight, w0 + b @ a, atol=1e-7, rtol=0)
    lora.unmerge(site, linear)
    torch.testing.assert_close(linear.weight, w0, atol=1e-7, rtol=0)


@pytest.mark.parametrize("table", [TINY_BERT, TINY_LLAMA], ids=["tiny_bert", "tiny_llama"])
def test_lora_outputs_equal_peft_with_same_weights(table: dict[str, Any], make_backbone: Callable[..., Any], registry: Any) -> None:
    harness = AdapterHarness("lora", {"rank": 4, "alpha": 12.0, "target_modules": QV[table["type"]]}, backbone=table, nonidentity={"init": "random"}, registry=registry)
    lora = harness.make_adapter(identity=False)
    model = harness.model(lora)
    ours = harness.outputs(model)
    harness.detach(model)
    # The same base weights and LoRA weights, put into PEFT's own LoRA layers.
    peft_model = get_peft_model(copy.deepcopy(harness.backbone.model), LoraConfig(r=4, lora_alpha=12.0, target_modules=QV[table["type"]]))
    with torch.no_grad():
        for site in lora.site_names:
            module = peft_model.base_model.model.get_submodule(site.removeprefix("model."))
            a, b = lora.matrices(site)
            module.lora_A["default"].weight.copy_(a)
            module.lora_B["default"].weight.copy_(b)
        peft_model.eval()
        out = peft_model(input_ids=harness.input_ids, attention_mask=harness.attention_mask)
    theirs = out.logits if table is TINY_LLAMA else out.last_hidden_state
    assert (ours - harness.outputs(model, adapters=False)).abs().max() > 1e-4  # the LoRA really acts
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("table", [TINY_BERT, TINY_LLAMA], ids=["tiny_bert", "tiny_llama"])
def test_lora_from_peft_gives_peft_outputs(table: dict[str, Any], tmp_path: Path, registry: Any) -> None:
    harness = AdapterHarness("lora", {"target_modules": QV[table["type"]]}, backbone=table, registry=registry)
    peft_model = get_peft_model(copy.deepcopy(harness.backbone.model), LoraConfig(r=3, lora_alpha=7.0, target_modules=QV[table["type"]]))
    torch.manual_seed(5)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.05)  # a "trained" community LoRA, not the zero init
    peft_model.save_pretrained(tmp_path / "community")
    peft_model.eval()
    with torch.no_grad():
        out = peft_model(input_ids=harness.input_ids, attention_mask=harness.attention_mask)
    theirs = out.logits if table is TINY_LLAMA else out.last_hidden_state
    harness.params = {"target_modules": QV[table["type"]], "from_peft": str(tmp_path / "community")}
    lora = harness.make_adapter()
    assert (lora.rank, lora.scale) == (3, 7.0 / 3)
    assert (lora.config.rank, lora.config.alpha) == (3, 7.0)  # the config says what was loaded, not the defaults
    model = harness.model(lora)
    torch.testing.assert_close(harness.outputs(model), theirs, atol=1e-5, rtol=0)
    harness.detach(model)


def test_lora_from_peft_rejects_mismatched_sites_and_missing_dirs(tmp_path: Path, registry: Any) -> None:
    harness = AdapterHarness("lora", {"target_modules": ["query"]}, backbone=TINY_BERT, registry=registry)
    peft_model = get_peft_model(copy.deepcopy(harness.backbone.model), LoraConfig(r=2, target_modules=["query", "value"]))
    peft_model.save_pretrained(tmp_path / "qv")
    harness.params = {"target_modules": ["query"], "from_peft": str(tmp_path / "qv")}
    with pytest.raises(MtkitError, match=r"set target_modules = \['query', 'value'\]"):
        harness.make_adapter()
    harness.params = {"from_peft": str(tmp_path / "nothing")}
    with pytest.raises(MtkitError, match="no adapter_config.json"):
        harness.make_adapter()
    harness.params = {"target_modules": ["query", "value"], "from_peft": str(tmp_path / "qv"), "rank": 4}
    with pytest.raises(MtkitError, match=r"^4 differs from the PEFT adapter in from_peft '.*qv', which has 2; leave rank out") as info:
        harness.make_adapter()
    assert info.value.key == "rank"


def test_lora_mix_applies_each_adapters_own_dropout(make_backbone: Callable[..., Any], make_adapter: Callable[..., Any]) -> None:
    backbone = make_backbone(TINY_BERT)
    noisy = make_adapter("lora", backbone, rank=4, init="random", dropout=0.5, target_modules=["query"]).train()
    clean = make_adapter("lora", backbone, rank=4, init="random", dropout=0.0, target_modules=["query"]).train()
    site = clean.site_names[0]
    x = torch.randn(2, 3, 32)
    torch.manual_seed(0)
    mixed = type(clean).mix([noisy, clean], site, x, x, torch.tensor([[0.0, 1.0], [0.0, 1.0]]), ForwardContext())
    torch.testing.assert_close(mixed, clean.delta(site, x, x, ForwardContext()), atol=1e-6, rtol=1e-5)  # no mask on `clean`
    torch.manual_seed(0)
    both = type(clean).mix([noisy, noisy], site, x, x, torch.tensor([[1.0, -1.0], [1.0, -1.0]]), ForwardContext())
    assert both.abs().max() > 1e-4  # the same adapter twice draws two masks, as two adapters would


def test_from_peft_error_names_the_recipe_file_and_which_adapter(tmp_path: Path, tiny_recipe: dict[str, Any], registry: Any) -> None:
    """The adapter names only its own field; building the run puts the file and the adapter's key in front."""
    from mtkit import TaskInfo
    from mtkit.model.build import build_model
    from mtkit.recipe.resolve import resolve

    tiny_recipe["adapters"]["topic"]["from_peft"] = str(tmp_path / "nothing")
    resolved = resolve(tiny_recipe, registry, "r.toml")
    infos = {"sentiment": TaskInfo("sentiment", 0, ("a", "b")), "topic": TaskInfo("topic", 1, tuple("abcde"))}
    with pytest.raises(MtkitError, match=r"^r\.toml: adapters\.topic: from_peft '.*nothing': no adapter_config\.json there"):
        build_model(resolved, infos)


def test_lora_merge_adapters_refuses_two_adapters(tiny_recipe: dict[str, Any], registry: Any) -> None:
    from mtkit import TaskInfo
    from mtkit.model.build import build_model
    from mtkit.recipe.resolve import resolve

    resolved = resolve(tiny_recipe, registry, "test")
    infos = {"sentiment": TaskInfo("sentiment", 0, ("a", "b")), "topic": TaskInfo("topic", 1, tuple("abcde"))}
    model = build_model(resolved, infos)
    with pytest.raises(MtkitError, match="every task routed to one and the same adapter"):
        model.merge_adapters()
