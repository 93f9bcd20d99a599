"""`lorahub`: CMA-ES finds the weights a synthetic library was composed with; the composition against a hand-written
one; the search as a phase of a run, its weights saved in the run directory and report."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from mtkit import FitData, MtkitError

from .conftest import Builder, encode, hidden, texts_unread

TASKS = torch.tensor([0, 1, 0, 1])


def _fit_data(model: Any, loss: Any, seed: int = 0) -> FitData:
    """The search's data: one batch of the test texts, scored by `loss()` (the test's own objective)."""
    ids, mask = encode(model)
    return FitData(
        phase="search", tasks=("sentiment",), adapter_tasks={}, seed=seed, device=torch.device("cpu"), batch_size=4,
        batches=lambda task, limit: [("sentiment", {"input_ids": ids, "attention_mask": mask})], loss=lambda pieces: loss(),
        forward_texts=texts_unread,
    )


def test_lorahub_composition_is_the_weighted_sum_of_a_and_b(build: Builder) -> None:
    model = build({"type": "lorahub"}, adapters=3, alpha=8.0)
    weights = torch.tensor([0.7, -0.3, 1.1])
    model.combiner.lorahub_weights.copy_(weights)
    ids, mask = encode(model)
    captured: dict[str, torch.Tensor] = {}
    site = next(iter(model.site_adapters()))
    handle = model.backbone.get_submodule(site).register_forward_hook(lambda m, args, out: captured.update(x=args[0], y=out), prepend=True)
    with torch.no_grad():
        out = hidden(model, TASKS)
        handle.remove()
        # By hand: A = sum w_k A_k, B = sum w_k s_k B_k, delta = B A x.
        adapters = list(model.adapters.values())
        a = sum(w * ad.lora_factors(site)[0] for w, ad in zip(weights, adapters, strict=True))
        b = sum(w * ad.lora_factors(site)[1] * ad.lora_factors(site)[2] for w, ad in zip(weights, adapters, strict=True))
        site_out = model.combiner.combine(site, captured["x"], captured["y"], model.site_adapters()[site], model.ctx)
    torch.testing.assert_close(site_out - captured["y"], captured["x"] @ a.T @ b.T, atol=1e-5, rtol=1e-5)
    with torch.no_grad(), model.use_combiner("combiner"):
        model.merge_adapters()  # the same LoRA for every input folds into the base weights
        folded = model.run_backbone(ids, mask, TASKS).hidden
    torch.testing.assert_close(folded, out, atol=1e-5, rtol=1e-5)


def test_lorahub_search_finds_the_weights_a_synthetic_library_was_composed_with(build: Builder) -> None:
    model = build({"type": "lorahub", "budget": 300, "penalty": 0.0, "sigma": 0.6}, adapters=3)
    combiner = model.combiner
    known = torch.tensor([0.9, 0.0, -0.6])
    with torch.no_grad():
        combiner.lorahub_weights.copy_(known)
        target = hidden(model, TASKS)
        combiner.lorahub_weights.zero_()
    summary = combiner.fit(_fit_data(model, lambda: (hidden(model, TASKS) - target).pow(2).mean()))
    found = combiner.lorahub_weights
    # B A is unchanged when every weight flips sign: the library determines the weights up to that sign.
    error = min((found - known).abs().max(), (found + known).abs().max())
    assert error < 0.03, (found, known)
    assert summary["evaluations"] <= 300 + 10 and list(summary["weights"]) == ["sentiment", "topic", "extra0"]
    assert summary["weights"]["sentiment"] == pytest.approx(float(found[0]), abs=1e-6)


def test_lorahub_l1_penalty_pulls_useless_weights_to_zero(build: Builder) -> None:
    model = build({"type": "lorahub", "budget": 200, "penalty": 1.0}, adapters=2)
    model.combiner.fit(_fit_data(model, lambda: torch.tensor(0.0)))  # the loss is flat: only the penalty speaks
    assert model.combiner.lorahub_weights.abs().max() < 0.05


def test_lorahub_rejects_loras_of_different_ranks(build: Builder) -> None:
    model = build({"type": "lorahub"}, adapters=2, ranks=[4, 2])
    with pytest.raises(MtkitError, match=r"combiner 'lorahub' sums the LoRAs' A and B matrices, so their ranks .* must agree"):
        hidden(model, TASKS)


def test_lorahub_search_runs_as_a_phase_and_saves_its_weights(tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    from mtkit.rundir.load import load_run
    from mtkit.train.run import run_recipe
    from tests.conftest import write_toml

    recipe = copy.deepcopy(tiny_recipe)
    recipe["run"]["output_dir"] = str(tmp_path / "run")
    for task in recipe["tasks"].values():
        task["dataset"] |= {"max_train_examples": 16, "max_eval_examples": 8}
    recipe["combiner"] = {"type": "lorahub", "budget": 12, "population": 4, "examples": 4}
    recipe["phases"] = [
        {"name": "library", "steps": 3, "train": ["adapters", "heads"], "lr": 5e-3},
        {"name": "search", "steps": 0, "routing": "learned", "fit_combiner": True},
    ]
    run_recipe(write_toml(tmp_path / "lorahub.toml", recipe))

    fits = json.loads((tmp_path / "run" / "combiner_fit.json").read_text())
    found = fits["search"]
    assert found["combiner"] == "lorahub" and set(found["weights"]) == {"sentiment", "topic"}
    assert 12 <= found["evaluations"] <= 16 and found["examples"] == 8
    saved = load_file(tmp_path / "run" / "model.safetensors")["combiner.lorahub_weights"]
    assert saved.tolist() == pytest.approx(list(found["weights"].values()), abs=1e-5)
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Combiner routine in phase `search` (`lorahub`)" in report and "| sentiment |" in report
    reloaded = load_run(tmp_path / "run").model.combiner
    assert reloaded.lorahub_weights.tolist() == pytest.approx(saved.tolist())
