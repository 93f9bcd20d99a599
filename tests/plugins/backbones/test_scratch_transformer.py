"""The from-scratch transformer encoder: structure, padding mask, sentence embeddings, adapters on its sites."""

from __future__ import annotations

import pytest
import torch
from mtkit_backbones.config import ScratchTransformerBackboneConfig
from mtkit_backbones.scratch_transformer import ScratchTransformerBackbone
from pydantic import ValidationError
from torch import nn

from mtkit import AdapterConfig, select_sites
from tests.plugins.components_support import tiny_scratch  # noqa: F401  (fixture)


def test_scratch_transformer_config_defaults_are_the_seed_sizes() -> None:
    config = ScratchTransformerBackboneConfig()
    assert (config.num_layers, config.num_heads, config.hidden_size, config.dropout) == (6, 8, 768, 0.1)
    assert config.positional == "sinusoidal" and config.tokenizer == "all-MiniLM-L6-v2"


def test_scratch_transformer_config_rejects_heads_not_dividing_width() -> None:
    with pytest.raises(ValidationError, match="not divisible by num_heads"):
        ScratchTransformerBackboneConfig(hidden_size=30, num_heads=4)


def test_scratch_transformer_sites_are_plain_linears_per_block(tiny_scratch: ScratchTransformerBackbone) -> None:
    sites = tiny_scratch.sites()
    expected = {f"blocks.{i}.{name}" for i in range(2) for name in ("attention.query", "attention.key", "attention.value", "attention.output", "ffn.intermediate", "ffn.output")}
    assert set(sites) == expected
    assert sites["blocks.1.ffn.intermediate"].out_features == 4 * 32 and sites["blocks.1.attention.query"].layer == 1
    assert not any(isinstance(m, nn.MultiheadAttention) for m in tiny_scratch.modules())
    chosen = select_sites(AdapterConfig(), sites)  # the default adapter targets: query and value
    assert sorted(chosen) == ["blocks.0.attention.query", "blocks.0.attention.value", "blocks.1.attention.query", "blocks.1.attention.value"]


def test_scratch_transformer_layers_and_embeddings(tiny_scratch: ScratchTransformerBackbone) -> None:
    assert len(tiny_scratch.layers()) == 2 and tiny_scratch.hidden_size == 32
    ids = torch.tensor([[101, 2000, 102]])
    assert tiny_scratch.embeddings()(ids).shape == (1, 3, 32)


def test_scratch_transformer_padding_does_not_change_real_tokens(tiny_scratch: ScratchTransformerBackbone) -> None:
    tok = tiny_scratch.tokenizer
    alone = tok(["a short sentence"], return_tensors="pt")
    padded = tok(["a short sentence", "a much longer sentence that forces padding of the first"], padding=True, return_tensors="pt")
    with torch.no_grad():
        h_alone = tiny_scratch(alone["input_ids"], alone["attention_mask"]).hidden[0]
        h_padded = tiny_scratch(padded["input_ids"], padded["attention_mask"]).hidden[0, : h_alone.shape[0]]
    torch.testing.assert_close(h_alone, h_padded, atol=1e-5, rtol=1e-4)


def test_scratch_transformer_embed_is_normalised_masked_mean(tiny_scratch: ScratchTransformerBackbone) -> None:
    batch = tiny_scratch.tokenizer(["one", "two words here"], padding=True, return_tensors="pt")
    with torch.no_grad():
        emb = tiny_scratch.embed(batch["input_ids"], batch["attention_mask"])
        hidden = tiny_scratch(batch["input_ids"], batch["attention_mask"]).hidden
        n = int(batch["attention_mask"][0].sum())
        expected = torch.nn.functional.normalize(hidden[0, :n].mean(0), dim=0)
        texts = tiny_scratch.encode_texts(["one", "two words here"])
    assert emb.shape == (2, 32)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(emb[0], expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(texts, emb, atol=1e-5, rtol=1e-4)


def test_scratch_transformer_learned_positions_and_length_limit() -> None:
    backbone = ScratchTransformerBackbone(ScratchTransformerBackboneConfig(num_layers=1, num_heads=2, hidden_size=16, positional="learned", max_positions=8))
    assert backbone.embedding.positions.weight.shape == (8, 16)
    with pytest.raises(ValueError, match="max_positions 8"):
        backbone(torch.ones(1, 9, dtype=torch.long), torch.ones(1, 9, dtype=torch.long))


def test_scratch_transformer_unknown_tokenizer_is_a_clear_error() -> None:
    from mtkit import MtkitError

    with pytest.raises(MtkitError, match="^'/no/such/tokenizer': ") as info:
        ScratchTransformerBackbone(ScratchTransformerBackboneConfig(tokenizer="/no/such/tokenizer", num_layers=1, num_heads=2, hidden_size=16))
    assert info.value.key == "tokenizer"
