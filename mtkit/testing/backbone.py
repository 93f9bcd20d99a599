"""Contract checks for backbones: forward shape, Linear sites, layers, state dict round trip."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtkit.testing._common import check_config, check_state_dict_round_trip
from mtkit.testing._tiny import SAMPLE_TEXTS

__all__ = ["check_backbone"]


def _batch(backbone: Any) -> dict[str, Any]:
    tokenizer = backbone.tokenizer
    if tokenizer.pad_token_id is None:  # causal LM tokenizers often lack one; heads pad with 0 then
        tokenizer.pad_token = tokenizer.eos_token
    return dict(tokenizer(SAMPLE_TEXTS, padding=True, truncation=True, max_length=16, return_tensors="pt"))


def check_backbone(cls: type, params: Mapping[str, Any]) -> None:
    """Check a backbone class built with `params` (keep them tiny: this builds it three times)."""
    import torch
    from torch import nn

    config = check_config(cls, "backbone", params)
    torch.manual_seed(0)
    backbone = cls(config)
    assert backbone.tokenizer is not None, f"{cls.__name__} sets no tokenizer"
    hidden_size = backbone.hidden_size
    assert isinstance(hidden_size, int) and hidden_size > 0, f"hidden_size is {hidden_size!r}"
    layers = list(backbone.layers())
    assert layers and all(isinstance(m, nn.Module) for m in layers), "layers() is empty or holds non-modules"
    assert isinstance(backbone.embeddings(), nn.Module), "embeddings() is not a module"
    sites = backbone.sites()
    assert sites, "sites() is empty: adapters would have nothing to attach to"
    for name, site in sites.items():
        module = backbone.get_submodule(name)
        assert isinstance(module, nn.Linear), f"site {name!r} is a {type(module).__name__}, not nn.Linear"
        assert (site.in_features, site.out_features) == (module.in_features, module.out_features), f"site {name!r} sizes"
        assert site.layer is None or 0 <= site.layer < len(layers), f"site {name!r} names layer {site.layer}"

    batch = _batch(backbone)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    seen: list[str] = []
    handles = [backbone.get_submodule(n).register_forward_hook(lambda *_, n=n: seen.append(n)) for n in sites]
    backbone.eval()
    with torch.no_grad():
        output = backbone(ids, mask)
    for handle in handles:
        handle.remove()
    assert tuple(output.hidden.shape) == (ids.shape[0], ids.shape[1], hidden_size), (
        f"hidden is {tuple(output.hidden.shape)}, expected (B, T, hidden_size) = {(ids.shape[0], ids.shape[1], hidden_size)}"
    )
    assert torch.isfinite(output.hidden).all(), "hidden holds NaN or inf"
    never = sorted(set(sites) - set(seen))
    assert not never, f"sites never called through their forward (an adapter hook would not fire): {never[:4]}"
    if cls.generative:
        assert output.logits is not None and tuple(output.logits.shape[:2]) == tuple(ids.shape), "a generative backbone returns (B, T, V) logits"
        generated = backbone.generate(ids, mask, max_new_tokens=2, do_sample=False)
        assert generated.shape[0] == ids.shape[0], "generate() returns one row per prompt"

    check_state_dict_round_trip(lambda seed: cls(config), lambda b: b(ids, mask).hidden, first=backbone)
