"""`merge`: the LoRAs merged into one LoRA per site, against real PEFT's add_weighted_adapter; folded into the base
weights and exported as a PEFT LoRA."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel

from mtkit import MtkitError, Registry

from .conftest import Builder, hidden
from .peft_library import hf_model, library_model, mtkit_hidden, peft_hidden, save_library

ALPHAS = {"t0": 8.0, "t1": 4.0, "t2": 12.0}
WEIGHTS = {"t0": 0.7, "t1": 1.2, "t2": -0.4}


def _peft_merge(folders: dict[str, Path], method: str, weights: dict[str, float], **options: Any) -> Any:
    names = list(folders)
    peft_model = PeftModel.from_pretrained(copy.deepcopy(hf_model()), str(folders[names[0]]), adapter_name=names[0])
    for name in names[1:]:
        peft_model.load_adapter(str(folders[name]), adapter_name=name)
    peft_model.add_weighted_adapter(names, [weights[n] for n in names], "merged", combination_type=method, **options)
    peft_model.set_adapter("merged")
    return peft_model


def _deterministic_bernoulli(probabilities: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """A fixed mask for given probabilities and shape: DARE's draws made equal on both sides of a comparison."""
    index = torch.arange(probabilities.numel(), dtype=torch.float64).reshape(probabilities.shape)
    return ((index * 0.6180339887) % 1.0 < probabilities.double()).to(probabilities.dtype)


CASES = [
    ("linear", {}),
    ("svd", {}),
    ("svd", {"svd_rank": 2}),
    ("cat", {}),
    ("ties", {"density": 0.5}),
    ("ties", {"density": 0.3, "majority_sign_method": "frequency"}),
    ("magnitude_prune", {"density": 0.4}),
    ("ties_svd", {"density": 0.6}),
    ("magnitude_prune_svd", {"density": 0.5, "svd_rank": 3}),
    ("dare_linear", {"density": 1.0}),
    ("dare_ties", {"density": 1.0}),
    ("dare_linear", {"density": 0.5, "draws": "fixed"}),
    ("dare_ties", {"density": 0.7, "draws": "fixed"}),
    ("dare_ties_svd", {"density": 0.5, "draws": "fixed"}),
]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return save_library(tmp_path_factory.mktemp("merge") / "lib", ALPHAS)


@pytest.mark.parametrize(("method", "options"), CASES, ids=[f"{m}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for m, o in CASES])
def test_merge_outputs_equal_peft_add_weighted_adapter(
    method: str, options: dict[str, Any], library: dict[str, Path], registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders = library
    options = dict(options)
    if options.pop("draws", None) == "fixed":
        monkeypatch.setattr(torch, "bernoulli", _deterministic_bernoulli)
    theirs = peft_hidden(_peft_merge(folders, method, WEIGHTS, **options))
    model = library_model(registry, folders["t0"].parent, {"type": "merge", "method": method, "weights": WEIGHTS, **options})
    ours = mtkit_hidden(model)
    assert (ours - mtkit_hidden(model, routing="oracle")).abs().max() > 1e-3  # the merge really acts
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["linear", "svd", "ties"])
def test_merge_task_negation_equals_peft_with_a_negative_weight(method: str, library: dict[str, Path], registry: Registry) -> None:
    """Task negation: one LoRA subtracted (weight -1), and one subtracted from another, as PEFT >= 0.18 allows."""
    options = {"density": 0.5} if method == "ties" else {}
    negated = {"t1": -1.0}
    theirs = peft_hidden(_peft_merge({"t1": library["t1"]}, method, negated, **options))
    ours = mtkit_hidden(library_model(registry, library["t0"].parent, {"type": "merge", "method": method, "adapters": ["t1"], "weight": -1.0, **options}))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    pair = {"t0": 1.0, "t1": -0.5}
    theirs = peft_hidden(_peft_merge({n: library[n] for n in pair}, method, pair, **options))
    ours = mtkit_hidden(library_model(registry, library["t0"].parent, {"type": "merge", "method": method, "adapters": list(pair), "weights": pair, **options}))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_merge_dare_is_seeded_per_site(build: Builder) -> None:
    tasks = torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        first = hidden(build({"type": "merge", "method": "dare_ties", "density": 0.5}, adapters=3), tasks)
        again = hidden(build({"type": "merge", "method": "dare_ties", "density": 0.5}, adapters=3), tasks)
        other = hidden(build({"type": "merge", "method": "dare_ties", "density": 0.5, "seed": 1}, adapters=3), tasks)
    torch.testing.assert_close(first, again, atol=0, rtol=0)
    assert (first - other).abs().max() > 1e-4


def test_merge_folds_into_the_base_weights_and_unfolds(build: Builder) -> None:
    model = build({"type": "merge", "method": "ties", "density": 0.5}, adapters=3)
    tasks = torch.tensor([0, 1, 0, 1])
    base = {name: p.detach().clone() for name, p in model.backbone.named_parameters()}
    with torch.no_grad():
        unmerged = hidden(model, tasks)
        with model.use_combiner("combiner"):
            assert model.merge_adapters() == "combiner"
        assert model.site_adapters() == {}  # no site hook left: a forward costs the bare backbone
        torch.testing.assert_close(hidden(model, tasks), unmerged, atol=1e-5, rtol=0)
        torch.testing.assert_close(hidden(model, tasks, routing="oracle"), unmerged, atol=1e-5, rtol=0)  # merged means merged
        model.unmerge_adapters()
    for name, p in model.backbone.named_parameters():
        torch.testing.assert_close(p, base[name], atol=1e-6, rtol=0)
    assert model.site_adapters()
    with torch.no_grad():
        torch.testing.assert_close(hidden(model, tasks), unmerged, atol=1e-6, rtol=0)


def test_merge_adapters_refuses_a_combiner_that_decides_per_input(build: Builder) -> None:
    model = build({"type": "router"})
    with model.use_combiner("combiner"), pytest.raises(MtkitError, match="combiner 'router' decides per input, so it cannot be merged"):
        model.merge_adapters()


def test_merge_rejects_unknown_adapters_unequal_ranks_and_missing_density(build: Builder) -> None:
    with pytest.raises(MtkitError, match=r"^test: combiner\.adapters: 'nope' is not an adapter of the recipe"):
        build({"type": "merge", "adapters": ["sentiment", "nope"]})
    with pytest.raises(MtkitError, match=r"^test: combiner\.weights: 'topic' is not one of the merged adapters \(sentiment\)"):
        build({"type": "merge", "adapters": ["sentiment"], "weights": {"topic": 2.0}})
    with pytest.raises(MtkitError, match=r"combiner: method 'ties' prunes each adapter first: set density"):
        build({"type": "merge", "method": "ties"})
    with pytest.raises(MtkitError, match=r"density applies to pruning methods .* not to 'svd'; remove it"):
        build({"type": "merge", "density": 0.5})
    model = build({"type": "merge", "method": "linear"}, ranks=[2, 4])
    with pytest.raises(MtkitError, match=r"method 'linear' merges the LoRAs' A and B matrices entry by entry, so their ranks must agree \('sentiment': 2, 'topic': 4\)"):
        hidden(model, torch.tensor([0, 1, 0, 1]))
    with torch.no_grad():
        hidden(build({"type": "merge", "method": "svd"}, ranks=[2, 4]), torch.tensor([0, 1, 0, 1]))  # svd merges any ranks


def test_merge_of_a_subset_leaves_the_other_adapters_out(build: Builder) -> None:
    tasks = torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        only_topic = hidden(build({"type": "merge", "method": "linear", "adapters": ["topic"]}, adapters=3), tasks)
        alone = hidden(build({"type": "merge", "method": "linear"}, adapters=2), tasks, routing="learned")
        topic = hidden(build({"type": "oracle"}, adapters=3), torch.ones(4, dtype=torch.long))
    torch.testing.assert_close(only_topic, topic, atol=1e-5, rtol=0)  # one LoRA merged is that LoRA
    assert (alone - topic).abs().max() > 1e-4


def test_merge_run_exports_its_merge_as_a_peft_lora_and_deploys_at_the_bare_backbones_cost(
    tiny_recipe: dict[str, Any], tmp_path: Path
) -> None:
    from transformers import AutoModel

    from mtkit.rundir.export import export_run
    from mtkit.rundir.load import load_run
    from mtkit.train.run import run_recipe
    from tests.conftest import write_toml

    recipe = copy.deepcopy(tiny_recipe)
    recipe["run"]["output_dir"] = str(tmp_path / "run")
    for adapter in recipe["adapters"].values():
        adapter["init"] = "random"  # a library without training: B off zero
    for task in recipe["tasks"].values():
        task["dataset"] |= {"max_train_examples": 16, "max_eval_examples": 8}
    recipe["combiner"] = {"type": "merge", "method": "ties", "density": 0.5, "weights": {"topic": 0.5}}
    recipe["phases"] = [{"name": "merged", "steps": 0, "routing": "learned"}]
    run_recipe(write_toml(tmp_path / "merge.toml", recipe))

    cost = json.loads((tmp_path / "run" / "inference.json").read_text())
    assert cost["merged"] == "combiner" and cost["relative_flops"] == 1.0  # folded into the weights: the bare backbone's work
    assert cost["model_flops"] > cost["bare_flops"]  # unmerged, the merged LoRA costs extra products
    routing = json.loads((tmp_path / "run" / "routing.json").read_text())
    assert routing["mean_routing_accuracy"] is None  # every input gets the same merge: no routing decision to score

    folders = export_run(tmp_path / "run", tmp_path / "export")
    assert list(folders) == ["combiner", "sentiment", "topic"]
    config = json.loads((folders["combiner"] / "adapter_config.json").read_text())
    assert config["r"] == config["lora_alpha"] == 4
    model = load_run(tmp_path / "run").model
    enc = model.backbone.tokenizer(["a gripping, funny film", "shares fell on monday"], padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = model.run_backbone(enc["input_ids"], enc["attention_mask"], torch.tensor([0, 1])).hidden
        bare = AutoModel.from_config(model.backbone.model.config)  # a bare copy: a deepcopy would carry the site hooks
        bare.load_state_dict(model.backbone.model.state_dict())
        peft_model = PeftModel.from_pretrained(bare, str(folders["combiner"])).eval()
        theirs = peft_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["arrow", "merge", "lorahub", "retrieval", "cat", "phatgoose", "layer_gates"])
def test_show_documents_every_field_of_the_library_combiners(name: str, registry: Registry) -> None:
    from tests.core.test_cli import mtkit

    result = mtkit("show", "combiner", name, env={"COLUMNS": "400"})
    assert result.returncode == 0, result.stderr
    fields = registry.get("combiner", name).config_class.model_fields
    for field, info in fields.items():
        assert info.description and field in result.stdout, field
        assert info.description.split()[0] in result.stdout, field
