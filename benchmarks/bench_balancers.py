"""Training-step cost of every balancer on recipes/shared_lora_balancing.toml, as ratios to `static`.

    python -m benchmarks.bench_balancers [--repeats 10] [--batch 32] [--threads 2] [--clock wall|cpu]

One mixed batch of the recipe's three tasks (real examples, drawn once), the packaged MiniLM with the recipe's
shared LoRA and three heads. A step is what the trainer does per step minus the optimiser: the forward pass, then
the balancer's step (its loss and one backward pass, or each task's backward pass and the combination of their
gradients on the shared LoRA). The parameters are not updated, so every balancer sees the same model and batch.
Balancers run interleaved within each repeat (so load changes on a shared machine hit all of them alike), in an
order rotated every repeat; each figure is the median over repeats of the time divided by `static`'s in the same
repeat, with the 25th-75th percentile of that ratio as the noise. `static, diagnostics step` is a step on which
the gradient diagnostics are computed (every `diagnostics_every` steps). On a shared machine, `--threads 1 --clock
cpu` times this process's own CPU work, which other processes disturb far less.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from mtkit import load_registry
from mtkit.model.build import build_component, build_run
from mtkit.model.param_groups import select_parameters
from mtkit.recipe.resolve import Node, load_recipe
from mtkit.rundir.evaluate import move
from mtkit.train.balancing import Balancing, parameter_owners, split_parameters

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "shared_lora_balancing.toml"
BALANCERS = ["static", "uncertainty", "dwa", "gradnorm", "pcgrad", "cagrad", "imtl_g", "nash_mtl", "aligned_mtl", "upgrad", "mgda"]


def setup(batch_size: int) -> tuple[Any, list[tuple[str, dict[str, Any]]], dict[str, Callable[[], Any]]]:
    """The recipe's model in training mode with adapters and heads trainable, one mixed batch, and per balancer
    a step function."""
    overrides = [f"tasks.{t}.dataset.max_train_examples=256" for t in ("sentiment", "topic", "subject")]
    resolved = load_recipe(RECIPE, overrides)
    built = build_run(resolved)
    model = built.model.train()
    model.requires_grad_(False)
    for group in select_parameters(model, ["adapters", "heads"]):
        for p in group.params:
            p.requires_grad_(True)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    tokenizer = model.backbone.tokenizer
    per_task = batch_size // len(built.tasks)
    batches = []
    for task, data in built.tasks.items():
        batches.append((task, move(model.heads[task].collate(data.train[:per_task], tokenizer), torch.device("cpu"))))

    def probe(task: str) -> Callable[[], Any]:
        single = [b for b in batches if b[0] == task]
        return lambda: sum(model(single)[0].values())

    split = split_parameters(named, parameter_owners(named, {t: probe(t) for t in built.tasks}))
    weights = {t: section.loss_weight for t, section in resolved.recipe.tasks.items()}
    registry = load_registry()
    node = resolved.balancer()
    steps: dict[str, Callable[[], Any]] = {}
    for name, every in [(n, 0) for n in BALANCERS] + [("static", 1)]:
        entry = registry.get("balancer", name)
        balancer_node = Node(node.path, node.kind, entry, entry.config_class.model_validate({"diagnostics_every": every}))
        balancer = build_component(balancer_node, resolved.source, seed=0, task_names=list(built.tasks))
        balancing = Balancing(balancer, weights, split, lambda loss: loss.backward(), diagnostics_every=every)
        steps[name if not every else "static, diagnostics step"] = _step(model, batches, balancing)
    return model, batches, steps


def _step(model: Any, batches: list[tuple[str, dict[str, Any]]], balancing: Balancing) -> Callable[[], Any]:
    def run() -> Any:
        model.zero_grad(set_to_none=True)
        for p in balancing.balancer.parameters():
            p.grad = None
        losses, _ = model(batches)
        return balancing.step(losses, batches, torch.zeros(()), 0, lambda total: None)

    return run


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="wall time, or this process's CPU time")
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    torch.set_num_threads(args.threads)
    _, batches, steps = setup(args.batch)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.warmup):
        for run in steps.values():
            run()
    for repeat in range(args.repeats):
        order = list(steps.items())
        order = order[repeat % len(order) :] + order[: repeat % len(order)]  # rotate who goes first
        for name, run in order:
            torch.manual_seed(repeat)
            tic = clock()
            run()
            times[name].append(clock() - tic)
    static = times["static"]
    sizes = ", ".join(f"{task} {batch['input_ids'].shape[0]}" for task, batch in batches)
    print(f"one mixed batch ({sizes}), {args.threads} threads, {args.repeats} interleaved repeats after {args.warmup} warm-up, {args.clock} clock")
    print(f"{'balancer':28} {'median ms':>10} {'x static':>9} {'(p25-p75)':>14}")
    for name, values in times.items():
        ratios = [v / s for v, s in zip(values, static, strict=True)]
        spread = f"({quantile(ratios, 0.25):.2f}-{quantile(ratios, 0.75):.2f})"
        print(f"{name:28} {1000 * statistics.median(values):10.0f} {statistics.median(ratios):9.2f} {spread:>14}")
    noise = statistics.median(abs(a - b) / b for a, b in zip(static[1:], static[:-1], strict=True))
    print(f"noise: static's step time changes by a median {100 * noise:.1f}% between consecutive repeats")


if __name__ == "__main__":
    main()
