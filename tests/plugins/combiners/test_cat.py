"""`cat`: per-site learned scalar weights over the frozen adapters, against a hand-written reference (outputs and
gradients), and trained in an ordinary phase with the library frozen."""

from __future__ import annotations

import torch

from mtkit import site_key

from .conftest import Builder, encode, reference_hidden


def test_cat_outputs_and_gradients_match_a_hand_written_reference(build: Builder) -> None:
    model = build({"type": "cat"}, adapters=3).train()
    model.backbone.eval()  # no dropout: both sides see the same pass
    for adapter in model.adapters.values():
        adapter.eval()
    combiner = model.combiner
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for weights in combiner.site_weights.values():
            weights.copy_(torch.randn(3, generator=generator))
    ids, mask = encode(model)
    with model.use_combiner("combiner"):
        ours = model.run_backbone(ids, mask, torch.zeros(4, dtype=torch.long)).hidden
    ours.pow(2).sum().backward()
    grads = {k: p.grad.clone() for k, p in combiner.site_weights.items()}
    combiner.zero_grad()
    theirs = reference_hidden(model, ids, mask, lambda site, x: combiner.site_weights[site_key(site)].expand(x.shape[0], -1))
    theirs.pow(2).sum().backward()
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    for key, p in combiner.site_weights.items():
        assert grads[key].abs().max() > 0
        torch.testing.assert_close(grads[key], p.grad, atol=1e-4, rtol=1e-4)


def test_cat_starts_as_the_average_of_the_adapters(build: Builder) -> None:
    model = build({"type": "cat"}, adapters=2)
    assert all(torch.equal(p.detach(), torch.full((2,), 0.5)) for p in model.combiner.site_weights.values())
    assert all(torch.equal(p.detach(), torch.full((2,), 1.0)) for p in build({"type": "cat", "init": 1.0}).combiner.site_weights.values())
