"""`scratch_transformer`: a transformer encoder built from its config, trained from scratch.

Blocks are written with plain nn.Linear projections (query, key, value, output; intermediate,
output) rather than nn.MultiheadAttention, whose fused in_proj weight hides q/k/v from adapters.
Blocks are pre-LayerNorm, which trains stably from random weights without a long warmup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AutoTokenizer

from mtkit import Backbone, BackboneOutput, masked_mean

from ._hub import load_error, resolve_model
from .config import ScratchTransformerBackboneConfig


def sinusoids(positions: int, width: int) -> Tensor:
    """Fixed sinusoidal position encodings.  -> (positions, width)"""
    position = torch.arange(positions, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(positions, width)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate)[:, : width // 2]
    return table


class Embeddings(nn.Module):
    """Token embeddings plus positions, then dropout."""

    def __init__(self, config: ScratchTransformerBackboneConfig, vocab_size: int, pad_id: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, config.hidden_size, padding_idx=pad_id)
        if config.positional == "learned":
            self.positions = nn.Embedding(config.max_positions, config.hidden_size)
        else:
            self.register_buffer("table", sinusoids(config.max_positions, config.hidden_size), persistent=False)
        self.scale = math.sqrt(config.hidden_size) if config.positional == "sinusoidal" else 1.0
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: Tensor) -> Tensor:
        length = input_ids.shape[1]
        pos = self.positions.weight[:length] if hasattr(self, "positions") else self.table[:length]
        return self.dropout(self.tokens(input_ids) * self.scale + pos)  # (B, T, D)


class SelfAttention(nn.Module):
    def __init__(self, config: ScratchTransformerBackboneConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.heads = config.num_heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.output = nn.Linear(width, width)
        self.dropout = config.dropout

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        b, t, d = x.shape

        def split(h: Tensor) -> Tensor:
            return h.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # (B, H, T, D/H)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=self.dropout if self.training else 0.0)
        return self.output(mixed.transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    def __init__(self, config: ScratchTransformerBackboneConfig) -> None:
        super().__init__()
        inner = config.intermediate_size or 4 * config.hidden_size
        self.intermediate = nn.Linear(config.hidden_size, inner)
        self.output = nn.Linear(inner, config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(F.gelu(self.intermediate(x)))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then x + ffn(LN(x))."""

    def __init__(self, config: ScratchTransformerBackboneConfig) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.hidden_size)
        self.attention = SelfAttention(config)
        self.ffn_norm = nn.LayerNorm(config.hidden_size)
        self.ffn = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), keep))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class ScratchTransformerBackbone(Backbone):
    """A transformer encoder built from its config with random weights, plus a named tokenizer."""

    name = "scratch_transformer"
    config_class = ScratchTransformerBackboneConfig

    def __init__(self, config: ScratchTransformerBackboneConfig) -> None:
        super().__init__()
        self.config = config
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(resolve_model(config.tokenizer))
        except (OSError, ValueError) as exc:
            raise load_error(config.tokenizer, exc, "tokenizer") from None
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.embedding = Embeddings(config, len(self.tokenizer), pad_id)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size)
        self.apply(_init_weights)

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def layers(self) -> Sequence[nn.Module]:
        return self.blocks

    def embeddings(self) -> nn.Module:
        return self.embedding

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> BackboneOutput:
        if input_ids.shape[1] > self.config.max_positions:
            raise ValueError(f"input of {input_ids.shape[1]} tokens exceeds backbone.max_positions {self.config.max_positions}")
        keep = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T): padded keys get no attention
        x = self.embedding(input_ids)
        for block in self.blocks:
            x = block(x, keep)
        return BackboneOutput(hidden=self.final_norm(x))

    def embed(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Sentence embeddings: mean over unpadded tokens, L2-normalised.  -> (B, D)"""
        return F.normalize(masked_mean(self(input_ids, attention_mask).hidden, attention_mask), dim=-1)

    def encode_texts(self, texts: Sequence[str], max_length: int = 128) -> Tensor:
        """Sentence embeddings of raw texts (tokenized with the backbone's tokenizer).  -> (N, D)"""
        batch = self.tokenizer(list(texts), truncation=True, max_length=min(max_length, self.config.max_positions), padding=True, return_tensors="pt")
        device = next(self.parameters()).device
        return self.embed(batch["input_ids"].to(device), batch["attention_mask"].to(device))


def _init_weights(module: nn.Module) -> None:
    # BERT-style initialisation: small normal weights keep early activations well scaled.
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if module.padding_idx is not None:
            nn.init.zeros_(module.weight[module.padding_idx])
