"""`hyper_lora`: per-sample generated LoRA against a hand-written loop, context sources, caching, saving."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from mtkit.testing.adapter import AdapterHarness
from tests.conftest import TINY_BERT, TINY_LLAMA, write_toml

SMALL = {"rank": 2, "hidden_dim": 16, "embedding_dim": 8, "init": "random"}


def test_hyper_lora_matches_per_sample_loop(registry: Any) -> None:
    h = AdapterHarness("hyper_lora", {**SMALL, "target_modules": ["query", "value"]}, backbone=TINY_BERT, registry=registry)
    adapter = h.make_adapter()
    model = h.model(adapter)
    with torch.no_grad():
        model.run_backbone(h.input_ids, h.attention_mask, h.task_ids)  # fills the context (embeddings representation)
        ctx = model.ctx
        context = ctx.representation("embeddings")
        site = "model.encoder.layer.1.attention.self.value"
        x = torch.randn(4, 5, 32)
        delta = adapter.delta(site, x, x, ctx)
        layer, kind, shape = adapter._site_index[site]
        for i in range(4):  # the hypernetwork written out for one sample
            hidden = F.gelu(
                adapter.hyper_context(context[i])
                + adapter.hyper_position(torch.cat([adapter.hyper_layer.weight[layer], adapter.hyper_site.weight[kind]]))
            )
            a = adapter.hyper_gen_a[shape](hidden).view(2, 32) / math.sqrt(32)
            b = adapter.hyper_gen_b[shape](hidden).view(32, 2)
            torch.testing.assert_close(delta[i], x[i] @ a.T @ b.T * adapter.scale, atol=1e-6, rtol=1e-5)
    assert (delta[0] - delta[1]).abs().max() > 1e-6  # different inputs, different adapters
    h.detach(model)


def test_hyper_lora_mixed_batch_equals_each_sample_alone(registry: Any) -> None:
    h = AdapterHarness("hyper_lora", SMALL, backbone=TINY_BERT, registry=registry)
    model = h.model(h.make_adapter())
    full = h.outputs(model)
    tok = h.backbone.tokenizer
    from mtkit.testing.adapter import TEXTS

    for i, text in enumerate(TEXTS):
        enc = tok([text], return_tensors="pt")
        with torch.no_grad():
            alone = model.run_backbone(enc["input_ids"], enc["attention_mask"], h.task_ids[:1]).hidden
        torch.testing.assert_close(full[i, : alone.shape[1]], alone[0], atol=1e-5, rtol=1e-5)
    h.detach(model)


def test_hyper_lora_layer_source_applies_only_after_layer(registry: Any) -> None:
    h = AdapterHarness("hyper_lora", {**SMALL, "source": "layer:0", "target_modules": ["query", "value"]}, backbone=TINY_BERT, registry=registry)
    model = h.model(h.make_adapter())
    seen: list[torch.Tensor] = []
    handle = h.backbone.layers()[0].register_forward_hook(lambda m, a, out: seen.append((out[0] if isinstance(out, tuple) else out).detach()))
    adapted = h.outputs(model)
    base = h.outputs(model, adapters=False)
    handle.remove()
    torch.testing.assert_close(seen[0], seen[1], atol=0, rtol=0)  # layer 0's sites come before its representation
    assert (adapted - base).abs().max() > 1e-5  # layer 1's sites are adapted
    h.detach(model)


def test_hyper_lora_frozen_pass_source_reads_the_bare_backbone(registry: Any) -> None:
    from mtkit import masked_mean

    h = AdapterHarness("hyper_lora", {**SMALL, "source": "frozen_pass"}, backbone=TINY_BERT, registry=registry)
    model = h.model(h.make_adapter())
    adapted = h.outputs(model)
    with torch.no_grad(), model.adapters_disabled():
        bare = masked_mean(h.backbone(h.input_ids, h.attention_mask).hidden, h.attention_mask)
    torch.testing.assert_close(model.ctx.representation("frozen_pass"), bare, atol=0, rtol=0)
    assert (adapted - h.outputs(model, adapters=False)).abs().max() > 1e-5
    h.detach(model)


def test_hyper_lora_generates_once_per_generate_call(registry: Any) -> None:
    h = AdapterHarness("hyper_lora", {**SMALL, "target_modules": ["q_proj", "v_proj"]}, backbone=TINY_LLAMA, registry=registry)
    adapter = h.make_adapter()
    model = h.model(adapter)
    calls: list[int] = []
    handles = [g.register_forward_hook(lambda *a: calls.append(1)) for g in adapter.hyper_gen_a.values()]
    tok = h.backbone.tokenizer
    tok.padding_side = "left"
    enc = tok(["the cat sat", "a long time ago in a"], padding=True, return_tensors="pt")
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    with torch.no_grad():
        cached = model.for_task("t").generate(batch, max_new_tokens=5, do_sample=False)
        assert len(calls) == len(adapter.site_names)  # once per site, not once per site and token
        uncached = model.for_task("t").generate(batch, max_new_tokens=5, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)
    for handle in handles:
        handle.remove()
    h.detach(model)


@pytest.mark.slow
def test_hyper_lora_run_saves_hypernetwork_without_backbone(tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    from safetensors import safe_open

    from mtkit.rundir.load import evaluate_run
    from mtkit.train.run import run_recipe

    recipe = copy.deepcopy(tiny_recipe)
    recipe["run"]["output_dir"] = str(tmp_path / "run")
    recipe["adapters"] = {"shared": {"type": "hyper_lora", "rank": 2, "hidden_dim": 16, "embedding_dim": 8}}
    for task in recipe["tasks"].values():
        task["adapter"] = "shared"
    recipe["phases"] = [{"name": "adapters", "steps": 4, "train": ["adapters", "heads"], "lr": 2e-2}]
    run_dir = run_recipe(write_toml(tmp_path / "tiny.toml", recipe)).path
    with safe_open(str(run_dir / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert not any(k.startswith("backbone.") for k in keys)
    assert any(k.startswith("adapters.shared.hyper_gen_b.") for k in keys)
    final = run_dir.joinpath("results.json").read_text()
    scores = evaluate_run(run_dir)  # rebuilt from the run directory: frozen base + saved hypernetwork
    for task, values in scores.items():
        for metric, value in values.items():
            assert f'"{metric}": {value}' in final or f'"{metric}": {round(value, 6)}' in final, (task, metric, value, final)
