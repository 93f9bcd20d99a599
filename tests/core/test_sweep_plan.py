"""Resolving variants x seeds into recipes (type swaps on configured recipes) and planning shared phases; nothing trains."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from mtkit import MtkitError, RecipeError, Registry
from mtkit.sweep.executors import gpu_for_slot, worker_env
from mtkit.sweep.plan import COMBINER_KEYS, make_plan
from mtkit.sweep.resolve import resolve_jobs
from mtkit.sweep.variants import Variant, parse_seeds, parse_swap, parse_variant
from tests.conftest import ROOT, write_toml

QUICKSTART = ROOT / "recipes" / "router_quickstart.toml"


def test_sweep_parses_seed_lists_and_ranges() -> None:
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("3, 0,7") == [3, 0, 7]
    assert parse_seeds("0-2,9,1") == [0, 1, 2, 9]
    for bad in ("4-1", "a", "0-", "1;2", ""):
        with pytest.raises(MtkitError, match="--seeds"):
            parse_seeds(bad)
    with pytest.raises(MtkitError, match="names a folder"):
        parse_swap('phases.0.train=["heads"]')
    assert parse_variant("x: a.b=1").origin == "--variant" and parse_swap("a.b=1,2")[0].origin == "--swap"


def test_sweep_type_swap_on_configured_recipe_drops_keys_the_new_type_does_not_accept(registry: Registry) -> None:
    jobs = resolve_jobs(QUICKSTART, parse_swap("combiner.type=router,oracle,weighted"), [], None, registry)
    by_name = {job.variant: job for job in jobs}
    assert by_name["router"].dropped == () and by_name["router"].recipe["combiner"]["hidden_dim"] == 128
    for name in ("oracle", "weighted"):
        assert set(by_name[name].dropped) >= {"combiner.source", "combiner.hidden_dim", "combiner.num_layers"}
        assert by_name[name].recipe["combiner"] == {"type": name}
        # a phase's auxiliary losses are not combiner keys: they stay (the core skips losses a combiner lacks)
        assert by_name[name].recipe["phases"][1]["aux_losses"] == {"task_supervision": 1.0, "load_balance": 0.01}
    # oracle has no parameters: its router phase has nothing to train and only evaluates; weighted trains there.
    assert by_name["oracle"].recipe["phases"][1]["train"] == [] and by_name["oracle"].recipe["phases"][1]["steps"] == 0
    assert {"phases.1.train.combiner", "phases.1.steps"} <= set(by_name["oracle"].dropped)
    assert by_name["weighted"].recipe["phases"][1]["train"] == ["combiner"] and by_name["weighted"].recipe["phases"][1]["steps"] == 40
    # a step budget given to every variant with --set (the README's shortened DYNAMO ablation) is for the variants
    # that train there: a parameter-free combiner's phase still only evaluates
    budget = {job.variant: job for job in resolve_jobs(QUICKSTART, parse_swap("combiner.type=router,uniform"), ["phases.1.steps=20"], None, registry)}
    assert budget["router"].recipe["phases"][1]["steps"] == 20
    assert budget["uniform"].recipe["phases"][1]["steps"] == 0 and budget["uniform"].recipe["phases"][1]["train"] == []


def test_sweep_type_swap_keeps_accepted_keys_and_never_drops_explicit_ones(tmp_path: Path, registry: Registry) -> None:
    raw = tomllib.loads(QUICKSTART.read_text())
    raw["combiner"]["temperature"] = 0.5  # the router and fusion_attention both accept a temperature
    path = write_toml(tmp_path / "router.toml", raw)
    jobs = resolve_jobs(path, parse_swap("combiner.type=fusion_attention,uniform"), [], [0, 1], registry)
    fusion = next(j for j in jobs if j.variant == "fusion_attention")
    assert fusion.recipe["combiner"] == {"type": "fusion_attention", "temperature": 0.5}
    assert "combiner.temperature" in next(j for j in jobs if j.variant == "uniform").dropped
    with pytest.raises(RecipeError) as set_by_user:
        resolve_jobs(path, parse_swap("combiner.type=router,oracle"), ["combiner.hidden_dim=64"], None, registry)
    [problem] = set_by_user.value.problems
    assert problem.startswith("variant 'oracle': combiner.hidden_dim is set by --set") and "'oracle' does not accept" in problem
    with pytest.raises(RecipeError, match="combiner.num_layers is set by --variant"):
        resolve_jobs(path, [parse_variant("o: combiner.type=oracle; combiner.num_layers=2")], [], None, registry)


def test_sweep_seeds_set_run_and_split_seeds_and_conflicting_overrides_fail(registry: Registry) -> None:
    jobs = resolve_jobs(QUICKSTART, [Variant("a", ("phases.0.lr=1e-3",))], [], [3, 5], registry, split_seeds=True)
    assert [(j.seed_index, j.seed, j.key) for j in jobs] == [(0, 3, "a/seed-3"), (1, 5, "a/seed-5")]
    assert jobs[1].recipe["run"]["seed"] == 5
    assert {t["dataset"]["split_seed"] for t in jobs[1].recipe["tasks"].values()} == {5}
    plain = resolve_jobs(QUICKSTART, [Variant("a", ("phases.0.lr=1e-3",))], [], [3], registry)
    assert "split_seed" not in plain[0].recipe["tasks"]["topic"]["dataset"]
    with pytest.raises(RecipeError, match="sets run.seed, which --seeds sets"):
        resolve_jobs(QUICKSTART, parse_swap("run.seed=1,2"), [], [0], registry)
    with pytest.raises(MtkitError, match="--split-seeds draws"):
        resolve_jobs(QUICKSTART, parse_swap("run.seed=1,2"), [], None, registry, split_seeds=True)
    with pytest.raises(RecipeError, match="variant 'bad': .*adapters.topic.rank"):
        resolve_jobs(QUICKSTART, [Variant("bad", ("adapters.topic.rank=0",))], [], [0, 1], registry)


def _phases(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "adapters", "steps": 4, "train": ["adapters", "heads"]}, *extra]


def test_sweep_plan_shares_leading_phases_runs_agree_on(tmp_path: Path, tiny_recipe: dict[str, Any], registry: Registry) -> None:
    recipe = copy.deepcopy(tiny_recipe)
    recipe["combiner"] = {"type": "router", "hidden_dim": 16}
    recipe["phases"] = _phases(
        {"name": "router", "steps": 3, "train": ["combiner"], "routing": "learned", "batching": "mixed"},
        {"name": "heads", "steps": 3, "train": ["heads"], "routing": "learned"},
    )
    path = write_toml(tmp_path / "r.toml", recipe)
    variants = [
        *parse_swap("combiner.type=router,weighted"),
        Variant("router_lr", ("phases.2.lr=3e-3",)),  # agrees with `router` up to phase 1 (the router phase included)
        Variant("other_rank", ("adapters.topic.rank=2",)),  # differs from the start
    ]
    plan = make_plan(resolve_jobs(path, variants, [], [0, 1], registry), tmp_path / "sweep", threads=1)
    specs = {s.key: s for s in plan.specs}
    shared = [s for s in plan.specs if s.shared]
    # per seed: phase 0 once for router, weighted and router_lr; the router phase once more for router and router_lr
    assert [(len(s.recipe["phases"]), s.fork.source if s.fork else None) for s in shared] == [
        (1, None), (1, None), (2, shared[0].key), (2, shared[1].key)
    ]
    assert specs["weighted/seed-0"].fork is not None and specs["weighted/seed-0"].fork.source == shared[0].key
    # phase 0 routes by task ids and does not train the combiner: a fork keeps its own combiner
    assert specs["weighted/seed-0"].fork.drop == (COMBINER_KEYS,) and specs["weighted/seed-0"].shared_phases == ["adapters"]
    # the router phase trains it: the deeper fork takes the shared router, and phase 1 of the nested shared run too
    assert specs["router_lr/seed-1"].fork == specs["router/seed-1"].fork and specs["router_lr/seed-1"].fork.drop == ()
    assert specs["router_lr/seed-1"].shared_phases == ["adapters", "router"]
    assert specs["other_rank/seed-0"].fork is None and specs["other_rank/seed-0"].shared_phases == []
    assert shared[2].fork is not None and shared[2].fork.drop == (COMBINER_KEYS,)
    for spec in plan.specs:
        assert spec.recipe["run"]["output_dir"] == str(tmp_path / "sweep" / spec.key) and spec.recipe["run"]["threads"] == 1
    alone = make_plan(resolve_jobs(path, variants, [], [0, 1], registry), tmp_path / "sweep", share=False)
    assert not any(s.shared or s.fork for s in alone.specs) and len(alone.specs) == 8


def test_sweep_plan_shares_a_phase_with_a_temperature_schedule(tmp_path: Path, tiny_recipe: dict[str, Any], registry: Registry) -> None:
    recipe = copy.deepcopy(tiny_recipe)
    recipe["combiner"] = {"type": "router", "hidden_dim": 16}
    recipe["phases"] = _phases(
        {"name": "router", "steps": 3, "train": ["combiner"], "routing": "learned", "temperature": {"start": 1.0, "end": 0.5}},
        {"name": "heads", "steps": 3, "train": ["heads"], "routing": "learned"},
    )
    path = write_toml(tmp_path / "r.toml", recipe)
    plan = make_plan(resolve_jobs(path, [Variant("a", ("phases.2.lr=1e-3",)), Variant("b", ("phases.2.lr=3e-3",))], [], None, registry), tmp_path)
    [shared] = [s for s in plan.specs if s.shared]
    # The router phase too: its annealed temperature is a buffer of the combiner, saved in the checkpoint forks start from.
    assert [p["name"] for p in shared.recipe["phases"]] == ["adapters", "router"]


def test_sweep_workers_get_their_share_of_threads_and_a_gpu_each() -> None:
    assert [gpu_for_slot(slot, ["0", "1", "2"]) for slot in range(4)] == ["0", "1", "2", "0"]
    assert gpu_for_slot(1, ["0"]) is None and gpu_for_slot(0, []) is None
    env = worker_env(1, 3, ["4", "5"])
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "3" and env["CUDA_VISIBLE_DEVICES"] == "5"


def test_sweep_swap_to_a_combiner_without_temperature_drops_its_phase_schedules(registry: Registry) -> None:
    dynamo = Path(__file__).resolve().parents[2] / "recipes" / "dynamo.toml"
    jobs = {job.variant: job for job in resolve_jobs(dynamo, parse_swap("combiner.type=router,gating"), [], None, registry)}
    router_phases, gating_phases = jobs["router"].recipe["phases"], jobs["gating"].recipe["phases"]
    scheduled = [i for i, phase in enumerate(router_phases) if "temperature" in phase]
    assert scheduled and all("temperature" not in gating_phases[i] for i in scheduled)
    assert {f"phases.{i}.temperature" for i in scheduled} <= set(jobs["gating"].dropped)
    with pytest.raises(RecipeError, match=r"phases\.\d\.temperature: the phase runs combiner 'gating', which has no temperature"):
        resolve_jobs(dynamo, parse_swap("combiner.type=router,gating"), [f"phases.{scheduled[0]}.temperature.end=0.2"], None, registry)
