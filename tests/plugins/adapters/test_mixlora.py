"""`mixlora` against a per-token loop (outputs, gradients, top-k and dense), its balance loss, per-task mixtures under
oracle routing; and for both mixture families (mixlora, hydra_lora): the aux loss through a real trainer step, the
export and merge refusals, and a real kill -9 + resume."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from mtkit_adapters import _experts
from safetensors.torch import load_file
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from mtkit import Adapter, Backbone, CombinerSetup, MtkitError, TaskInfo
from mtkit.model.multitask import MultiTaskModel
from mtkit.rundir.export import export_run
from mtkit.rundir.load import load_run
from mtkit.train.run import run_recipe
from tests.conftest import TINY_BERT, kill_and_resume, write_toml
from tests.plugins.adapters.conftest import encode

SITE = "model.encoder.layer.1.attention.self.value"


def reference_mixture(x: Tensor, router: Tensor, top_k: int | None, expert: Callable[[int, Tensor], Tensor]) -> Tensor:
    """The mixture written out token by token: softmax routing, the top k renormalised (or all), the experts summed."""
    rows = []
    for token in x.reshape(-1, x.shape[-1]):
        probs = torch.softmax(router @ token, -1)
        chosen = probs.topk(top_k).indices.tolist() if top_k is not None else list(range(len(probs)))
        total = probs[chosen].sum() if top_k is not None else torch.ones(())
        rows.append(sum(probs[e] / total * expert(e, token) for e in chosen))
    return torch.stack(rows).view(*x.shape[:-1], -1)


def compare_with_reference(adapter: Adapter, reference: Callable[[Tensor], Tensor]) -> None:
    """Outputs and the gradients of every parameter and of the input equal the reference's."""
    torch.manual_seed(3)
    x = torch.randn(3, 5, 32, requires_grad=True)
    upstream = torch.randn(3, 5, 32)
    out = adapter.routed(SITE, x, None)  # type: ignore[attr-defined]
    expected = reference(x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    params = [p for p in adapter.parameters() if p.requires_grad]
    got = torch.autograd.grad((out * upstream).sum(), [x, *params], allow_unused=True)
    want = torch.autograd.grad((expected * upstream).sum(), [x, *params], allow_unused=True)
    for g, w in zip(got, want, strict=True):
        if w is None:
            assert g is None or not g.abs().any()
        else:
            torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("top_k", [2, None], ids=["top2", "dense"])
def test_mixlora_matches_per_token_reference(make_backbone: Any, make_adapter: Any, top_k: int | None) -> None:
    backbone = make_backbone(TINY_BERT)
    adapter = make_adapter("mixlora", backbone, rank=3, num_experts=4, top_k=top_k, init="random")
    a, b, router = adapter.matrices(SITE)
    assert tuple(a.shape) == (4, 3, 32) and tuple(b.shape) == (4, 32, 3) and tuple(router.shape) == (4, 32)
    compare_with_reference(adapter, lambda x: reference_mixture(x, router, top_k, lambda e, t: b[e] @ (a[e] @ t) * adapter.scale))


def test_experts_dispatch_work_follows_k_not_n() -> None:
    """The expert products cost k rows per token for 4 or 16 experts, balanced or not: each expert meets only its
    own tokens."""
    tokens, rank, width = 64, 8, 32
    spread = torch.arange(tokens)

    def flops(num_experts: int, index: torch.Tensor) -> int:
        down, up = torch.randn(num_experts, rank, width), torch.randn(num_experts, width, rank)
        with FlopCounterMode(display=False) as counter:
            _experts.expert_products(_experts.Dispatch(index, num_experts), torch.randn(tokens, width), torch.rand(tokens, 2), down, up)
        return counter.get_total_flops()

    balanced = {n: torch.stack([spread % n, (spread + 1) % n], dim=-1) for n in (4, 16)}
    crowded = torch.stack([torch.zeros_like(spread), (spread % 3) + 1], dim=-1)  # expert 0 takes every token
    expected = 2 * 2 * tokens * rank * (width + width)  # k = 2 assignments per token, down and up products
    assert flops(4, balanced[4]) == flops(16, balanced[16]) == flops(16, crowded) == expected


def test_mixlora_balance_loss_is_the_switch_loss_over_kept_tokens() -> None:
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1]])
    routing = _experts.route(probs.log(), top_k=1)
    # Kept tokens 0-2: assignments to experts (0, 0, 2), so f = (2/3, 0, 1/3); P = mean of rows 0-2.
    mean = probs[:3].mean(0)
    expected = 3 * (2 / 3 * mean[0] + 1 / 3 * mean[2])
    torch.testing.assert_close(_experts.balance_loss(routing, torch.tensor([1, 1, 1, 0])), expected)
    even = _experts.route(torch.eye(3).repeat(2, 1) * 0.0, top_k=2)  # uniform router: loss 1 whatever the tie-breaking
    torch.testing.assert_close(_experts.balance_loss(even, None), torch.tensor(1.0))


def two_task_model(backbone: Backbone, adapters: dict[str, Adapter], registry: Any) -> MultiTaskModel:
    """Tasks t0 and t1 served by adapters a and b under oracle routing."""
    own = {"t0": "a", "t1": "b"}
    setup = CombinerSetup(adapter_names=tuple(adapters), task_names=("t0", "t1"), sites=backbone.sites(), hidden_size=backbone.hidden_size, task_adapters=own)
    oracle_cls = registry.component_class("combiner", "oracle")
    oracle = oracle_cls(oracle_cls.config_class.model_validate({}), setup=setup)
    head_cls = registry.component_class("head", "classification")
    heads = {t: head_cls(head_cls.config_class.model_validate({}), backbone=backbone, task=TaskInfo(t, i, ("x", "y"))) for i, t in enumerate(("t0", "t1"))}
    return MultiTaskModel(backbone, adapters, {"oracle": oracle}, heads, own, active="oracle")


def test_mixlora_per_task_mixtures_in_a_mixed_batch_equal_each_sample_alone(make_backbone: Any, make_adapter: Any, registry: Any) -> None:
    backbone = make_backbone(TINY_BERT)
    adapters = {n: make_adapter("mixlora", backbone, seed=s, rank=2, num_experts=4, init="random") for n, s in (("a", 1), ("b", 2))}
    model = two_task_model(backbone, adapters, registry).eval()
    for adapter in adapters.values():
        adapter.train()  # each mixture adds its balance loss (the backbone stays without dropout)
    batch = encode(backbone)
    tasks = torch.tensor([0, 1, 0, 1])
    out = model.run_backbone(batch["input_ids"], batch["attention_mask"], tasks).hidden
    mixed_loss = model.aux_losses["expert_balance"]
    for i in range(4):
        length = int(batch["attention_mask"][i].sum())
        alone = model.run_backbone(batch["input_ids"][i : i + 1, :length], batch["attention_mask"][i : i + 1, :length], tasks[i : i + 1]).hidden
        torch.testing.assert_close(out[i, :length], alone[0], atol=1e-5, rtol=1e-5)
    # The aux loss sums each mixture's loss over its own task's tokens only.
    own = []
    for task in (0, 1):
        rows = tasks == task
        model.run_backbone(batch["input_ids"][rows], batch["attention_mask"][rows], tasks[rows])
        own.append(model.aux_losses["expert_balance"])
    torch.testing.assert_close(mixed_loss, own[0] + own[1])
    model.eval()  # the adapters too
    model.run_backbone(batch["input_ids"], batch["attention_mask"], tasks)
    assert model.aux_losses == {}  # only training adds it


# --- both families through `mtkit run` ---------------------------------------------------------------------------

FAMILIES = {
    "mixlora": {"type": "mixlora", "rank": 2, "num_experts": 4, "top_k": 2, "target_modules": ["query", "value"]},
    "hydra_lora": {"type": "hydra_lora", "rank": 2, "num_experts": 3, "top_k": 2, "target_modules": ["query", "value"]},
}
ROUTER = {"mixlora": "mixlora_router", "hydra_lora": "hydra_router"}
DOWN = {"mixlora": "mixlora_a", "hydra_lora": "hydra_a"}


def mixture_recipe(tiny_recipe: dict[str, Any], family: str, aux: float, steps: int = 2) -> dict[str, Any]:
    """One shared mixture for both tasks (zero-initialised up-projections, so at first only the aux loss moves routers)."""
    recipe = copy.deepcopy(tiny_recipe)
    recipe["adapters"] = {"shared": dict(FAMILIES[family])}
    for task in recipe["tasks"].values():
        task["adapter"] = "shared"
        task["dataset"]["max_eval_examples"] = 8
    recipe["phases"] = [{"name": "adapters", "steps": steps, "train": ["adapters", "heads"], "lr": 5e-3, "aux_losses": {"expert_balance": aux}}]
    return recipe


def run(tmp_path: Path, recipe: dict[str, Any], name: str) -> Path:
    recipe = copy.deepcopy(recipe)
    recipe["run"]["output_dir"] = str(tmp_path / name)
    return run_recipe(write_toml(tmp_path / f"{name}.toml", recipe)).path


@pytest.mark.parametrize("family", list(FAMILIES))
def test_mixture_aux_loss_reaches_the_routers_through_a_trainer_step(tmp_path: Path, tiny_recipe: dict[str, Any], family: str) -> None:
    """With every up-projection at zero the task losses give the routers and down-projections no gradient: one step
    with the aux loss weighted moves the routers, one without leaves them where the down-projections stay."""
    with_aux = load_file(str(run(tmp_path, mixture_recipe(tiny_recipe, family, 1.0, steps=1), "aux") / "model.safetensors"))
    without = load_file(str(run(tmp_path, mixture_recipe(tiny_recipe, family, 0.0, steps=1), "plain") / "model.safetensors"))
    routers = [k for k in with_aux if ROUTER[family] in k]
    downs = [k for k in with_aux if DOWN[family] in k]
    assert routers and downs
    assert all(not torch.equal(with_aux[k], without[k]) for k in routers), "the aux loss did not reach every router"
    assert all(torch.equal(with_aux[k], without[k]) for k in downs), "something besides the aux loss moved the down-projections"
    logged = [json.loads(line) for line in (tmp_path / "aux" / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert logged and logged[-1]["aux/expert_balance"] >= 1.0 - 1e-6  # the Switch loss is at least 1


def test_mixtures_train_under_a_learned_router_with_both_aux_losses(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    """A mixlora and a hydra_lora as the router's adapters: the phase weights the router's load_balance and the
    mixtures' expert_balance, and both reach the log of one trainer step."""
    recipe = copy.deepcopy(tiny_recipe)
    recipe["adapters"] = {"sentiment": dict(FAMILIES["mixlora"]), "topic": dict(FAMILIES["hydra_lora"])}
    recipe["combiner"] = {"type": "router"}
    for task in recipe["tasks"].values():
        task["dataset"]["max_eval_examples"] = 8
    recipe["phases"] = [
        {"name": "adapters", "steps": 1, "train": ["adapters", "heads"], "lr": 5e-3},
        {"name": "joint", "steps": 2, "train": ["adapters", "combiner"], "lr": 5e-3, "routing": "learned", "batching": "mixed",
         "aux_losses": {"expert_balance": 0.01, "load_balance": 0.1}},
    ]
    out = run(tmp_path, recipe, "routed")
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    last = logged[-1]
    assert last["phase"] == "joint" and {"aux/expert_balance", "aux/load_balance"} <= set(last)
    assert "learned" in json.loads((out / "results.json").read_text())["joint"]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_mixture_export_and_merge_are_refused_by_name(tmp_path: Path, tiny_recipe: dict[str, Any], family: str) -> None:
    out = run(tmp_path, mixture_recipe(tiny_recipe, family, 0.01), "run")
    with pytest.raises(MtkitError, match=rf"no adapter of this run can be exported to format 'peft' \(formats by adapter: shared \({family}\): no format\)"):
        export_run(out, tmp_path / "export")
    model = load_run(out).model
    with pytest.raises(MtkitError, match=rf"adapter 'shared' \({family}\) cannot be merged into the base weights"):
        model.merge_adapters()


@pytest.mark.slow
def test_mixtures_killed_cli_run_resumes_to_the_same_result(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    """A real SIGKILL of `mtkit run` (a mixlora and a hydra_lora, balance loss weighted) mid-phase, then --resume."""
    recipe = mixture_recipe(tiny_recipe, "mixlora", 0.05, steps=40)
    recipe["adapters"]["topic"] = dict(FAMILIES["hydra_lora"], init="random")
    recipe["tasks"]["topic"]["adapter"] = "topic"
    recipe["run"]["checkpoint_every"] = 5
    reference = run(tmp_path, recipe, "reference")
    recipe["run"]["output_dir"] = str(tmp_path / "killed")
    kill_and_resume(write_toml(tmp_path / "killed.toml", recipe), tmp_path / "killed", timeout=300)
    killed = tmp_path / "killed"
    assert json.loads((killed / "results.json").read_text()) == json.loads((reference / "results.json").read_text())
    a, b = load_file(str(reference / "model.safetensors")), load_file(str(killed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
