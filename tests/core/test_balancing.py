"""The trainer's balanced step: the static default is the old loss path bit for bit, gradient balancers and diagnostics
run end to end, balancer state survives a crash and resume, and what cannot work is refused clearly."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from mtkit import MtkitError, RecipeError, Registry, TaskInfo
from mtkit.model.build import build_model
from mtkit.recipe.resolve import resolve, routing_path
from mtkit.rundir.checkpoint import load_latest
from mtkit.train.balancing import Balancing, StepOutcome, check_setup, gradient_diagnostics, parameter_owners, split_parameters
from mtkit.train.run import run_recipe
from tests.conftest import write_toml
from tests.plugins.balancers.toy import Toy, balanced_step, balancer

INFOS = {"sentiment": TaskInfo("sentiment", 0, ("neg", "pos")), "topic": TaskInfo("topic", 1, ("a", "b", "c", "d", "e"))}


def _run(tmp_path: Path, recipe: dict[str, Any], name: str, **kwargs: Any) -> Path:
    recipe = copy.deepcopy(recipe)
    recipe["run"]["output_dir"] = str(tmp_path / name)
    return run_recipe(write_toml(tmp_path / f"{name}.toml", recipe), **kwargs).path


def _records(out: Path, event: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("time", "seconds_per_step")} for r in records if r["event"] == event]


def _same_weights(a: Path, b: Path) -> bool:
    first, second = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def _shared(recipe: dict[str, Any]) -> dict[str, Any]:
    """The tiny recipe with one LoRA that both tasks use."""
    recipe = copy.deepcopy(recipe)
    del recipe["adapters"]["topic"]
    recipe["adapters"]["sentiment"]["init"] = "random"
    return recipe


def _task_loss_path(self: Balancing, losses: Any, batches: Any, aux: torch.Tensor, step: int, check: Any, scale: float = 1.0) -> StepOutcome:
    """The trainer's loss path before balancers existed (its `task_loss`, then one backward of the loss over the
    micro-batches), as the reference."""
    sizes = {task: int(batch["input_ids"].shape[0]) for task, batch in batches}
    total_size = sum(sizes.values())
    weights = self.loss_weights
    terms = [losses[t] * (weights[t] * sizes[t] / total_size) for t in losses if weights[t] > 0]
    loss = torch.stack(terms).sum() if terms else next(iter(losses.values())).new_zeros(())
    total = loss + aux
    check(total)
    if total.requires_grad:
        self.backward_fn(total / round(1 / scale))
    return StepOutcome({"loss": float(loss.detach())})


def test_static_balancer_reproduces_the_task_loss_path_bit_for_bit(tmp_path: Path, tiny_recipe: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Task batches then mixed ones, a loss weight other than 1; the gradient diagnostics only observe."""
    recipe = _shared(tiny_recipe)
    recipe["tasks"]["topic"]["loss_weight"] = 0.5
    recipe["phases"][1]["train"] = ["adapters", "heads"]
    balanced = _run(tmp_path, recipe, "static")
    diagnosed = _run(tmp_path, {**recipe, "balancer": {"type": "static", "diagnostics_every": 1}}, "diagnosed")
    with monkeypatch.context() as patch:
        patch.setattr(Balancing, "step", _task_loss_path)
        reference = _run(tmp_path, recipe, "reference")
    for out in (balanced, diagnosed):
        assert _same_weights(out, reference)
        assert json.loads((out / "results.json").read_text()) == json.loads((reference / "results.json").read_text())
        assert _records(out, "train") == _records(reference, "train")
    assert [r["phase"] for r in _records(diagnosed, "gradients")] == ["heads"] * 4  # the mixed phase: task batches hold one task


@pytest.mark.parametrize("name", ["upgrad", "gradnorm"])
def test_balancer_run_logs_task_gradients_to_metrics_tensorboard_and_the_report(tmp_path: Path, tiny_recipe: dict[str, Any], name: str) -> None:
    recipe = _shared(tiny_recipe)
    recipe["balancer"] = {"type": name, "diagnostics_every": 2}
    recipe["phases"][0]["batching"] = "mixed"
    out = _run(tmp_path, recipe, name)
    checks = _records(out, "gradients")
    assert [(r["phase"], r["step"]) for r in checks] == [("adapters", 2), ("adapters", 4)]  # the heads phase shares nothing
    for record in checks:
        assert record["grad_norm/sentiment"] > 0 and record["grad_norm/topic"] > 0 and -1 <= record["grad_cos/sentiment,topic"] <= 1
    train = _records(out, "train")
    assert all("balancer/weight/sentiment" in r for r in train if r["phase"] == "adapters")
    report = (out / "report.md").read_text()
    assert "## Task gradients on the shared parameters" in report and "![task gradients](task_gradients.png)" in report
    assert "| adapters | sentiment / topic |" in report and f"- balancer: `{name}`" in report
    assert (out / "task_gradients.png").stat().st_size > 10_000
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard")).Reload()
    assert "adapters/grad_cos/sentiment,topic" in events.Tags()["scalars"]
    trained = load_file(str(out / "model.safetensors"))
    start = build_model(resolve(copy.deepcopy(recipe), _registry(), "r.toml"), INFOS).state_dict()
    for prefix in ("adapters.sentiment.", "heads.sentiment.", "heads.topic."):
        assert any(not torch.equal(trained[k], start[k]) for k in trained if k.startswith(prefix)), prefix


def _registry() -> Registry:
    from mtkit import load_registry

    return load_registry()


@pytest.mark.parametrize(("phase", "step"), [("adapters", 4), ("heads", 3)])
def test_balancer_state_survives_a_crash_and_resume(tmp_path: Path, tiny_recipe: dict[str, Any], phase: str, step: int) -> None:
    """Learned log-variances (with their optimiser state) in phase 1, DWA's loss windows in phase 2: a run resumed
    from a mid-phase checkpoint ends exactly where an uninterrupted one does."""
    from tests.core.test_train import _Crash, _CrashAt

    recipe = _shared(tiny_recipe)
    recipe["balancer"] = {"type": "dwa", "window": 2}
    recipe["phases"][0] |= {"batching": "mixed", "balancer": {"type": "uncertainty", "lr_multiplier": 20.0}}
    recipe["phases"][1] |= {"steps": 6, "train": ["adapters", "heads"]}
    recipe["run"]["checkpoint_every"] = 2
    reference = _run(tmp_path, recipe, "reference")
    with pytest.raises(_Crash):
        _run(tmp_path, recipe, "crashed", callbacks=_CrashAt(phase, step))
    folder, state = load_latest(tmp_path / "crashed")  # type: ignore[misc]
    assert state["balancers"]["phases.0.balancer"] == {"type": "uncertainty", "keys": ["log_variance"]}
    assert set(load_file(str(folder / "balancers.safetensors"))) >= {"phases.0.balancer/log_variance", "balancer/measurements"}
    resumed = _run(tmp_path, recipe, "crashed", resume=True)
    assert _same_weights(resumed, reference)
    assert json.loads((resumed / "results.json").read_text()) == json.loads((reference / "results.json").read_text())
    train = {r["global_step"]: r for r in _records(reference, "train")}
    assert _records(resumed, "train")[-1] == train[max(train)]
    assert train[4]["balancer/weight/sentiment"] != 1.0  # the log-variances trained with the phase
    assert train[11]["balancer/weight/sentiment"] != 1.0  # DWA weights once two windows were measured


def test_gradient_balancer_in_a_phase_of_task_batches_is_a_validation_error(tiny_recipe: dict[str, Any], registry: Registry) -> None:
    recipe = _shared(tiny_recipe)
    recipe["balancer"] = {"type": "pcgrad"}
    with pytest.raises(RecipeError) as error:
        resolve(copy.deepcopy(recipe), registry, "r.toml")
    assert str(error.value) == (
        "r.toml: phases.0.batching: balancer 'pcgrad' (balancer) compares the tasks within a batch, but this phase draws one "
        'task per batch; set phases.0.batching = "mixed", or give the phase a balancer that works across batches '
        '(phases.0.balancer = {type = "static"})'
    )
    recipe["phases"][0]["balancer"] = {"type": "static"}  # the fix it names; the heads phase trains per-task heads only
    assert resolve(copy.deepcopy(recipe), registry, "r.toml").phases[0].balancer.type == "static"
    recipe["phases"][0]["balancer"] = {"type": "upgradd"}
    with pytest.raises(RecipeError, match=r"phases\.0\.balancer\.type 'upgradd' is not a registered balancer \(known: aligned_mtl, cagrad"):
        resolve(copy.deepcopy(recipe), registry, "r.toml")


def test_balancer_setup_refuses_several_processes_and_fp16_scaling_where_it_cannot_work() -> None:
    tasks = ["a", "b"]
    check_setup(balancer("static", tasks), 0, processes=2, scaled=True, where="r.toml: balancer")  # static works everywhere
    cases = [
        ("upgrad", 0, 2, False, "balancer 'upgrad' needs each task's gradient on the shared parameters, which mtkit computes outside DDP's gradient averaging, and this run has 2 processes"),
        ("dwa", 0, 2, False, "balancer 'dwa' keeps state of its own that each process would update from its own batches"),
        ("static", 5, 2, False, "(without accelerate launch), or set diagnostics_every = 0 and use a balancer that works in several (static)"),
        ("gradnorm", 0, 1, True, "balancer 'gradnorm' differentiates each task's loss on its own, which mtkit does without fp16 loss scaling"),
    ]
    for name, every, processes, scaled, message in cases:
        with pytest.raises(MtkitError) as error:
            check_setup(balancer(name, tasks), every, processes=processes, scaled=scaled, where="r.toml: balancer")
        assert message in str(error.value) and str(error.value).startswith("r.toml: balancer: ")
    check_setup(balancer("upgrad", tasks), 0, processes=1, scaled=False, where="r.toml: balancer")
    # gradient accumulation: refused by the balancers that several processes refuse (static without diagnostics works)
    check_setup(balancer("static", tasks), 0, processes=1, scaled=False, accumulation=4, where="r.toml: balancer")
    for name, message in [
        ("pcgrad", "balancer 'pcgrad' needs each task's gradient of the whole step, and this phase accumulates gradients over 4"),
        ("dwa", "balancer 'dwa' updates state of its own from each batch it sees, so it would see micro-batches, not steps"),
    ]:
        with pytest.raises(MtkitError, match="set grad_accumulation = 1") as error:
            check_setup(balancer(name, tasks), 0, processes=1, scaled=False, accumulation=4, where="r.toml: balancer")
        assert message in str(error.value)


def _batch(model: Any, task: str, texts: list[str], labels: list[int]) -> tuple[str, dict[str, Any]]:
    head, tokenizer = model.heads[task], model.backbone.tokenizer
    return task, head.collate(head.encode({"text": texts, "label": labels}, tokenizer, 32), tokenizer)


@pytest.mark.parametrize(
    ("adapters", "combiner", "routing", "shared"),
    [
        ("one", "oracle", "oracle", {"adapters.sentiment"}),  # one LoRA serving both tasks
        ("per_task", "oracle", "oracle", set()),  # each task's own LoRA under oracle routing
        ("per_task", "weighted", "learned", {"adapters.sentiment", "adapters.topic", "combiner"}),  # a learned mixture
    ],
)
def test_probe_splits_shared_from_task_specific_parameters(
    tiny_recipe: dict[str, Any], registry: Registry, adapters: str, combiner: str, routing: str, shared: set[str]
) -> None:
    recipe = _shared(tiny_recipe) if adapters == "one" else copy.deepcopy(tiny_recipe)
    recipe["combiner"] = {"type": combiner}
    model = build_model(resolve(recipe, registry, "r.toml"), INFOS).train()
    model.active = routing_path(routing)
    model.requires_grad_(True)
    model.backbone.requires_grad_(False)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    batches = {"sentiment": _batch(model, "sentiment", ["a fine film", "dull"], [1, 0]), "topic": _batch(model, "topic", ["shares fell", "a goal"], [0, 3])}
    owners = parameter_owners(named, {t: (lambda b=b: sum(model([b])[0].values())) for t, b in batches.items()})
    split = split_parameters(named, owners)
    assert {".".join(n.split(".")[:2]) if n.startswith("adapters.") else n.split(".")[0] for n, _ in split.shared} == shared
    heads = {t: {n.split(".")[1] for n, _ in named_ if n.startswith("heads.")} for t, named_ in split.own.items()}
    assert heads == {"sentiment": {"sentiment"}, "topic": {"topic"}}
    if adapters == "per_task" and routing == "oracle":
        assert {n.split(".")[1] for n, _ in split.own["topic"] if n.startswith("adapters.")} == {"topic"}


def test_gradient_diagnostics_are_the_norms_and_cosines_of_loss_weighted_task_gradients() -> None:
    gradients = torch.tensor([[3.0, 4.0, 0.0], [0.0, 1.0, 0.0], [-3.0, -4.0, 0.0]])
    toy = Toy(gradients, ["a", "b", "c"])
    named = list(toy.named_parameters())
    split = split_parameters(named, parameter_owners(named, {t: (lambda t=t: toy.losses([t])[t]) for t in toy.tasks}))
    balancing = Balancing(balancer("static", toy.tasks, diagnostics_every=2), {"a": 2.0, "b": 1.0, "c": 1.0}, split, lambda loss: loss.backward(), diagnostics_every=2)
    batches = [(t, {"input_ids": torch.zeros(2, 1)}) for t in toy.tasks]
    assert balancing.step(toy.losses(), batches, torch.zeros(()), 0, lambda total: None).diagnostics is None  # step 1 of every 2
    diagnostics = balancing.step(toy.losses(), batches, torch.zeros(()), 1, lambda total: None).diagnostics
    assert diagnostics == pytest.approx({"grad_norm/a": 10.0, "grad_norm/b": 1.0, "grad_norm/c": 5.0, "grad_cos/a,b": 0.8, "grad_cos/a,c": -1.0, "grad_cos/b,c": -0.8})
    assert gradient_diagnostics({"x": torch.zeros(3), "y": torch.ones(3)})["grad_cos/x,y"] == 0.0  # no direction, no cosine


def test_uncertainty_balancer_trains_on_the_toy_with_its_weights_in_the_logs() -> None:
    toy = Toy(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), ["a", "b"])
    outcome, unit = balanced_step(toy, "uncertainty")
    assert outcome.logs == {"loss": pytest.approx(2.5), "balancer/weight/a": 1.0, "balancer/weight/b": 1.0}
    torch.testing.assert_close(unit.log_variance.grad, torch.tensor([-0.25, -1.75]))  # share (1/2) x (-L_k + 1/2)


def test_cli_lists_shows_and_validates_balancers(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    from tests.core.test_cli import mtkit

    listed = json.loads(mtkit("list-components", "--kind", "balancer", "--json").stdout)["components"]
    assert [c["name"] for c in listed] == ["aligned_mtl", "cagrad", "dwa", "gradnorm", "imtl_g", "mgda", "nash_mtl", "pcgrad", "static", "uncertainty", "upgrad"]
    shown = mtkit("show", "balancer", "cagrad")
    assert shown.returncode == 0 and "radius" in shown.stdout and "diagnostics_every" in shown.stdout
    recipe = _shared(tiny_recipe)
    recipe["balancer"] = {"type": "upgrad"}
    bad = mtkit("validate", str(write_toml(tmp_path / "bad.toml", recipe)))
    assert bad.returncode == 2 and "phases.0.batching: balancer 'upgrad' (balancer) compares the tasks within a batch" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_sweep_forks_carry_balancer_state_and_equal_runs_from_scratch(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    """Phase 0 is shared (trained once, then forked): the learned log-variances it leaves continue into each variant's
    phase 1, and phase 2's own balancer, which the shared run never had, starts fresh; bit for bit as from scratch."""
    from mtkit.sweep.ablate import Execution, run_ablation
    from mtkit.sweep.variants import Variant
    from tests.core.test_sweep_runs import _assert_same_runs

    recipe = _shared(tiny_recipe)
    for task in recipe["tasks"].values():
        task["dataset"].update(max_train_examples=32, max_eval_examples=16)
    recipe["run"]["checkpoint_every"] = 2
    recipe["balancer"] = {"type": "uncertainty", "lr_multiplier": 20.0}
    recipe["phases"] = [
        {"name": "adapters", "steps": 3, "train": ["adapters", "heads"], "lr": 5e-3, "evaluate": False},
        {"name": "joint", "steps": 3, "train": ["adapters", "heads"], "lr": 1e-3, "batching": "mixed", "evaluate": False},
        {"name": "heads", "steps": 2, "train": ["heads"], "lr": 1e-3, "balancer": {"type": "dwa", "window": 1}},
    ]
    path = write_toml(tmp_path / "tiny.toml", recipe)
    variants = [Variant("slow", ("phases.1.lr=1e-3",)), Variant("fast", ("phases.1.lr=4e-3",))]
    threads = torch.get_num_threads()
    try:
        shared = run_ablation(path, variants, output_dir=tmp_path / "shared", execution=Execution(threads=1))
        run_ablation(path, variants, output_dir=tmp_path / "alone", execution=Execution(threads=1), share=False)
    finally:
        torch.set_num_threads(threads)
    assert [r.shared_phases for r in shared.variants] == [["adapters"], ["adapters"]]
    for name in ("slow", "fast"):
        _assert_same_runs(tmp_path / "shared" / name / "seed-0", tmp_path / "alone" / name / "seed-0")
    weights = [r["balancer/weight/sentiment"] for r in _records(tmp_path / "shared" / "fast" / "seed-0", "train") if r["phase"] == "joint"]
    assert weights and all(w != 1.0 for w in weights)  # the log-variances learned in the shared phase carried on
