"""Contract checks for combiners, run inside a real MultiTaskModel with two LoRA adapters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtkit.recipe.resolve import COMBINER_PATH, ORACLE_PATH
from mtkit.testing._common import check_config, check_state_dict_round_trip
from mtkit.testing._tiny import SAMPLE_TEXTS, tiny_backbone

__all__ = ["check_combiner"]

TASKS = ("first", "second")


def _model(cls: type, config: Any, seed: int = 0) -> Any:
    """Tiny BERT + two random-initialised LoRAs (non-zero deltas, so routing matters) + the combiner."""
    import torch

    from mtkit.api.combiner import CombinerSetup
    from mtkit.api.interfaces import TaskInfo
    from mtkit.api.registry import load_registry
    from mtkit.api.sites import select_sites
    from mtkit.model.multitask import MultiTaskModel
    from mtkit.recipe import defaults

    registry = load_registry()
    backbone = tiny_backbone("bert", seed=seed)
    backbone.requires_grad_(False)
    sites = backbone.sites()
    lora = registry.component_class("adapter", "lora")
    adapters = {}
    for name in TASKS:
        lora_config = lora.config_class.model_validate({"rank": 2, "init": "random"})
        adapters[name] = lora(lora_config, sites=select_sites(lora_config, sites), context_size=backbone.hidden_size)
    # Like build.py: the combiner sees the sites some adapter attaches to, in backbone order.
    adapted = {name: site for name, site in sites.items() if any(name in a.site_names for a in adapters.values())}
    own = {name: name for name in TASKS}
    setup = CombinerSetup(adapter_names=TASKS, task_names=TASKS, sites=adapted, hidden_size=backbone.hidden_size, task_adapters=own)
    torch.manual_seed(seed)
    combiner = cls(config, setup=setup)
    oracle_cls = registry.component_class("combiner", defaults.ORACLE_COMBINER)
    oracle = oracle_cls(oracle_cls.config_class.model_validate({}), setup=setup)
    head_cls = registry.component_class("head", "classification")
    heads = {
        name: head_cls(head_cls.config_class(dropout=0.0), backbone=backbone, task=TaskInfo(name, i, ("no", "yes")))
        for i, name in enumerate(TASKS)
    }
    return MultiTaskModel(backbone, adapters, {COMBINER_PATH: combiner, ORACLE_PATH: oracle}, heads, own, active=COMBINER_PATH)


def _batches(model: Any) -> list[tuple[str, dict[str, Any]]]:
    tokenizer = model.backbone.tokenizer
    out = []
    for i, task in enumerate(TASKS):
        texts = SAMPLE_TEXTS[2 * i : 2 * i + 2]
        head = model.heads[task]
        encoded = head.encode({"text": texts, "label": [0, 1]}, tokenizer, 16)
        out.append((task, head.collate(encoded, tokenizer)))
    return out


def check_combiner(cls: type, params: Mapping[str, Any]) -> None:
    """Check a combiner class with `params` under learned routing."""
    import torch

    config = check_config(cls, "combiner", params)
    model = _model(cls, config)
    combiner = model.combiner
    assert isinstance(getattr(cls.config_class, "aux_loss_names", ()), tuple), "the config class's aux_loss_names must be a tuple"
    assert "temperature" in combiner.state_dict(), "the combiner's temperature buffer is missing (call Combiner.__init__)"
    batches = _batches(model)
    batch_size = sum(b["input_ids"].shape[0] for _, b in batches)
    k = len(TASKS)

    weights_seen: list[tuple[int, ...]] = []
    combined: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    original_weights, original_combine = combiner.weights, combiner.combine

    def weights(site: str, x: Any, y: Any, ctx: Any) -> Any:
        w = original_weights(site, x, y, ctx)
        if w is not None:
            weights_seen.append(tuple(w.shape))
            assert torch.isfinite(w).all(), f"weights at {site!r} hold NaN or inf"
        return w

    def combine(site: str, x: Any, y: Any, adapters: Any, ctx: Any) -> Any:
        out = original_combine(site, x, y, adapters, ctx)
        combined.append((tuple(out.shape), tuple(y.shape)))
        return out

    # Instance attributes shadow the methods, so the calls the model makes pass through here.
    combiner.weights, combiner.combine = weights, combine
    model.train()
    combiner.set_temperature(1.0)
    with model.use_combiner(COMBINER_PATH):
        losses, _ = model(batches)
    del combiner.weights, combiner.combine
    assert combined, "the combiner's combine() was never called under learned routing"
    for out_shape, y_shape in combined:
        assert out_shape == y_shape, f"combine() returned {out_shape} for a site output of shape {y_shape}"
    for shape in weights_seen:
        assert len(shape) in (2, 3) and shape[0] == batch_size and shape[-1] == k, (
            f"weights() returned shape {shape}; expected (B, K) or (B, T, K) with B={batch_size}, K={k}"
        )
    aux = model.aux_losses
    unknown = sorted(set(aux) - set(combiner.aux_loss_names))
    assert not unknown, f"aux losses {unknown} are not declared in aux_loss_names {combiner.aux_loss_names}"
    for name, value in aux.items():
        assert value.dim() == 0 and torch.isfinite(value), f"aux loss {name!r} is not a finite scalar"
    loss = sum(losses.values())
    assert loss.dim() == 0 and torch.isfinite(loss), "the model's loss is not a finite scalar"
    total = loss + sum(aux.values())
    total.backward()
    trainable = [(n, p) for n, p in combiner.named_parameters() if p.requires_grad]
    # Every parameter must be in the graph; some may get exactly zero gradient at a symmetric init
    # (fusion attention's zero query gives its keys none), but not all of them.
    no_grad = [n for n, p in trainable if p.grad is None]
    assert not no_grad, f"no gradient reaches the combiner's parameters {no_grad[:4]} under learned routing"
    if trainable:
        assert any(torch.any(p.grad != 0) for _, p in trainable), "every combiner parameter gets zero gradient"

    # Evaluation records one routing row per sample and forward pass; training records nothing.
    model.eval()
    with torch.no_grad(), model.use_combiner(COMBINER_PATH), model.recording_routing() as log:
        model(batches)
    assert len(log) == 1 and tuple(log[0].shape) == (batch_size, k), f"evaluation recorded {[tuple(t.shape) for t in log]}"
    assert torch.allclose(log[0].sum(-1), torch.ones(batch_size), atol=1e-4), "recorded routing rows must sum to 1"

    with model.use_combiner(ORACLE_PATH):  # the built-in oracle combiner runs instead, with the same adapters
        losses, _ = model(batches)
    assert all(torch.isfinite(v) for v in losses.values())

    if cls.task_independent:
        _check_task_independent(model, batches)

    from mtkit.api.fitting import FitsItself

    if isinstance(combiner, FitsItself):
        _check_fit(model, batches)

    def run(m: Any) -> Any:
        torch.manual_seed(0)  # combiners that draw at random (e.g. random routing) draw the same
        with m.use_combiner(COMBINER_PATH):
            return sum(m(batches)[0].values())

    check_state_dict_round_trip(lambda seed: _model(cls, config, seed=seed), run)


def _check_task_independent(model: Any, batches: list[tuple[str, dict[str, Any]]]) -> None:
    """A combiner that claims `task_independent` gives the same outputs (and routing) for the same inputs whatever
    task ids its samples carry, in evaluation and in training."""
    import torch

    inputs = torch.cat([b["input_ids"] for _, b in batches if b["input_ids"].shape[1] == batches[0][1]["input_ids"].shape[1]])
    mask = torch.ones_like(inputs)
    rows = inputs.shape[0]
    tasks = [torch.full((rows,), t, dtype=torch.long) for t in range(len(TASKS))] + [torch.arange(rows) % len(TASKS)]
    for training in (False, True):
        model.train(training)
        outputs, routing = [], []
        for task_ids in tasks:
            torch.manual_seed(0)  # the same draws for a combiner that samples (Gumbel noise in training)
            with torch.no_grad(), model.use_combiner(COMBINER_PATH), model.recording_routing() as log:
                outputs.append(model.run_backbone(inputs, mask, task_ids).hidden)
            routing.append(log)
        for task_ids, hidden, log in zip(tasks[1:], outputs[1:], routing[1:], strict=True):
            assert torch.equal(hidden, outputs[0]), (
                f"{'training' if training else 'evaluation'}: the combiner claims task_independent, but the same inputs under task "
                f"ids {task_ids.tolist()} give other outputs than under {tasks[0].tolist()}"
            )
            assert len(log) == len(routing[0]) and all(torch.equal(a, b) for a, b in zip(log, routing[0], strict=True)), "routing differs by task id"
    model.eval()


def _check_fit(model: Any, batches: list[tuple[str, dict[str, Any]]]) -> None:
    """A combiner with a routine (`mtkit.FitsItself`) fits on each task's batch (each adapter serves the task of its
    name), returns a JSON summary, trains nothing outside itself, and routes afterwards."""
    import json

    import torch

    from mtkit.api.fitting import FitData
    from mtkit.train.fit import forward_texts

    by_task = dict(batches)

    def loss(pieces: Any) -> Any:
        with model.use_combiner(COMBINER_PATH):
            return sum(model(list(pieces))[0].values())

    data = FitData(
        phase="fit", tasks=TASKS, adapter_tasks={name: (name,) for name in TASKS}, seed=0, device=torch.device("cpu"),
        batch_size=2, batches=lambda task, limit: [(task, by_task[task])], loss=loss,
        forward_texts=lambda texts: forward_texts(model, texts, batch_size=2, max_length=32, device=torch.device("cpu")),
    )
    outside = {n: p.detach().clone() for n, p in model.named_parameters() if not n.startswith("combiner.")}
    model.requires_grad_(False)
    model.eval()
    summary = model.combiner.fit(data)
    json.dumps(summary)  # the run directory stores it as JSON
    changed = [n for n, p in model.named_parameters() if n in outside and not torch.equal(outside[n], p.detach())]
    assert not changed, f"fit() changed parameters outside the combiner: {changed[:4]}"
    with torch.no_grad(), model.use_combiner(COMBINER_PATH):
        losses, _ = model(batches)
    assert all(torch.isfinite(v) for v in losses.values()), "the model's loss is not finite after fit()"
