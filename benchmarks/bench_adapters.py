"""Adapter speed on the packaged MiniLM: mtkit LoRA vs PEFT LoRA, merged LoRA vs the bare backbone,
hyper_lora vs static LoRA, and the mixtures (mixlora: 8 LoRA experts, top 2 per token; hydra_lora: a shared A
and 8 B heads, top 2 per token, and its default, 4 heads mixed densely) vs one LoRA of the same rank.

    python -m benchmarks.bench_adapters [--threads 2] [--repeats 15] [--iters 2] [--batch-size 8] [--seq-len 48] [--clock wall|cpu]

Every figure is a ratio of two variants measured in the same run. Variants are timed in
interleaved rounds (each round times every variant once, in a rotating order), so load from
other processes hits all of them alike; a ratio is the median over rounds of the per-round ratio,
and the spread column (min-max of those per-round ratios) shows the noise seen. On a busy shared
machine, `--threads 1 --clock cpu` times this process's own CPU work, which other processes disturb far less.
Targets: mtkit LoRA training step / PEFT <= 1.05; merged LoRA inference / bare backbone <= 1.02; mixlora top-2 of 8 /
LoRA <= 1.15 and hydra_lora / LoRA <= 1.10, in training (the balance loss included) and inference.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from mtkit import Adapter, CombinerSetup, TaskInfo, load_registry, select_sites
from mtkit.model.multitask import MultiTaskModel

TEXTS = [
    "a gripping, funny and thoroughly humane film about growing up",
    "shares fell sharply on monday after the bank warned on profits",
    "dull, predictable and far too long for what it has to say",
    "the minister resigned after weeks of pressure from his own party",
]
TARGETS = ["query", "value"]


def build(registry, rank: int) -> dict[str, object]:
    """Eight copies of MiniLM: bare, with mtkit lora (unmerged and merged), with PEFT lora, with mtkit hyper_lora,
    mixlora and hydra_lora (top 2 of 8 heads, and dense over 4)."""
    from peft import LoraConfig, get_peft_model

    cls = registry.component_class("backbone", "hf_encoder")
    config = cls.config_class.model_validate({"model": "all-MiniLM-L6-v2"})
    bare = cls(config).requires_grad_(False)

    def with_adapter(name: str, **params: object) -> tuple[MultiTaskModel, Adapter]:
        backbone = copy.deepcopy(bare)
        adapter_cls = registry.component_class("adapter", name)
        adapter_config = adapter_cls.config_class.model_validate({"target_modules": TARGETS, **params})
        torch.manual_seed(0)
        adapter = adapter_cls(adapter_config, sites=select_sites(adapter_config, backbone.sites()), context_size=backbone.hidden_size)
        combiner_cls = registry.component_class("combiner", "oracle")
        setup = CombinerSetup(
            adapter_names=("a",), task_names=("t",), sites=backbone.sites(), hidden_size=backbone.hidden_size, task_adapters={"t": "a"}
        )
        combiner = combiner_cls(combiner_cls.config_class.model_validate({}), setup=setup)
        head_cls = registry.component_class("head", "classification")
        head = head_cls(head_cls.config_class.model_validate({}), backbone=backbone, task=TaskInfo("t", 0, ("x", "y")))
        return MultiTaskModel(backbone, {"a": adapter}, {"oracle": combiner}, {"t": head}, {"t": "a"}, active="oracle"), adapter

    lora_model, lora = with_adapter("lora", rank=rank, alpha=2.0 * rank, init="random")
    merged_model, _ = with_adapter("lora", rank=rank, alpha=2.0 * rank, init="random")  # same seed: same weights
    merged_model.merge_adapters()  # folded into the weights; its site hooks are removed
    hyper_model, hyper = with_adapter("hyper_lora", rank=rank, alpha=2.0 * rank, init="random")
    mixlora_model, mixlora = with_adapter("mixlora", rank=rank, alpha=2.0 * rank, num_experts=8, top_k=2, init="random")
    hydra_model, hydra = with_adapter("hydra_lora", rank=rank, alpha=2.0 * rank, num_experts=8, top_k=2, init="random")
    dense_model, _ = with_adapter("hydra_lora", rank=rank, alpha=2.0 * rank, init="random")  # its defaults: 4 heads, dense
    peft_model = get_peft_model(copy.deepcopy(bare.model), LoraConfig(r=rank, lora_alpha=2.0 * rank, target_modules=TARGETS, lora_dropout=0.0))
    with torch.no_grad():  # the same LoRA weights in PEFT's layers
        for site in lora.site_names:
            module = peft_model.base_model.model.get_submodule(site.removeprefix("model."))
            a, b = lora.matrices(site)  # type: ignore[attr-defined]
            module.lora_A["default"].weight.copy_(a)
            module.lora_B["default"].weight.copy_(b)
    return {"bare": bare, "lora": lora_model, "merged": merged_model, "lora_params": list(lora.parameters()), "hyper": hyper_model,
            "hyper_params": list(hyper.parameters()), "peft": peft_model, "mixlora": mixlora_model, "hydra": hydra_model,
            "hydra_dense": dense_model}


def timed(fn: Callable[[], object], iters: int, clock: Callable[[], float]) -> float:
    start = clock()
    for _ in range(iters):
        fn()
    return (clock() - start) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--iters", type=int, default=2, help="steps per variant per round")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=48)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (steadier on a shared machine; use with --threads 1)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    m = build(load_registry(), args.rank)
    bare, lora, hyper, peft = m["bare"], m["lora"], m["hyper"], m["peft"]
    tok = bare.tokenizer  # type: ignore[attr-defined]
    texts = [TEXTS[i % len(TEXTS)] + " " + str(i) for i in range(args.batch_size)]
    enc = tok(texts, padding="max_length", truncation=True, max_length=args.seq_len, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    tasks = torch.zeros(args.batch_size, dtype=torch.long)
    opt_lora = torch.optim.AdamW(m["lora_params"], lr=1e-4)  # type: ignore[arg-type]
    opt_hyper = torch.optim.AdamW(m["hyper_params"], lr=1e-4)  # type: ignore[arg-type]
    opt_peft = torch.optim.AdamW([p for p in peft.parameters() if p.requires_grad], lr=1e-4)  # type: ignore[attr-defined]
    mixlora, hydra, hydra_dense = m["mixlora"], m["hydra"], m["hydra_dense"]
    opt_mixlora = torch.optim.AdamW(mixlora.adapters.parameters(), lr=1e-4)  # type: ignore[attr-defined]
    opt_hydra = torch.optim.AdamW(hydra.adapters.parameters(), lr=1e-4)  # type: ignore[attr-defined]
    opt_dense = torch.optim.AdamW(hydra_dense.adapters.parameters(), lr=1e-4)  # type: ignore[attr-defined]

    def train_step(forward: Callable[[], torch.Tensor], opt: torch.optim.Optimizer) -> None:
        loss = forward().pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    mt_forward = lambda model: (lambda: model.run_backbone(ids, mask, tasks).hidden)

    def mixture_step(model: MultiTaskModel, opt: torch.optim.Optimizer) -> None:
        """A training step of a mixture: its adapter in training mode, so the balance loss is computed and added."""
        model.adapters.train()
        try:
            loss = mt_forward(model)().pow(2).mean() + 0.01 * model.aux_losses["expert_balance"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        finally:
            model.adapters.eval()
    peft_forward = lambda: peft(input_ids=ids, attention_mask=mask).last_hidden_state

    def no_grad(fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():
                return fn()
        return run

    merged = m["merged"]
    for model in (bare, lora, hyper, peft, merged, mixlora, hydra, hydra_dense):
        model.eval()  # type: ignore[attr-defined]
    variants: dict[str, Callable[[], object]] = {
        "train mtkit lora": lambda: train_step(mt_forward(lora), opt_lora),
        "train peft lora": lambda: train_step(peft_forward, opt_peft),
        "train mtkit hyper_lora": lambda: train_step(mt_forward(hyper), opt_hyper),
        "infer mtkit lora": no_grad(mt_forward(lora)),
        "infer peft lora": no_grad(peft_forward),
        "infer mtkit lora merged": no_grad(mt_forward(merged)),
        "infer bare backbone": no_grad(lambda: bare(ids, mask).hidden),  # type: ignore[operator]
        "infer mtkit hyper_lora": no_grad(mt_forward(hyper)),
        "train mtkit mixlora": lambda: mixture_step(mixlora, opt_mixlora),  # type: ignore[arg-type]
        "train mtkit hydra_lora": lambda: mixture_step(hydra, opt_hydra),  # type: ignore[arg-type]
        "infer mtkit mixlora": no_grad(mt_forward(mixlora)),
        "infer mtkit hydra_lora": no_grad(mt_forward(hydra)),
        "train mtkit hydra_lora dense": lambda: mixture_step(hydra_dense, opt_dense),  # type: ignore[arg-type]
        "infer mtkit hydra_lora dense": no_grad(mt_forward(hydra_dense)),
    }
    with torch.no_grad():  # the merged copy really computes the same function
        diff = (mt_forward(merged)() - mt_forward(lora)()).abs().max().item()
        peft_diff = (peft_forward() - mt_forward(lora)()).abs().max().item()
    for fn in variants.values():  # warm-up
        for _ in range(2):
            fn()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(args.repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            times[name].append(timed(variants[name], args.iters, clock))
        print(f"round {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)

    rows = [
        ("training step", "mtkit lora / peft lora", "train mtkit lora", "train peft lora", 1.05),
        ("inference", "mtkit lora / peft lora", "infer mtkit lora", "infer peft lora", None),
        ("inference", "mtkit merged lora / bare backbone", "infer mtkit lora merged", "infer bare backbone", 1.02),
        ("inference", "mtkit lora (unmerged) / bare backbone", "infer mtkit lora", "infer bare backbone", None),
        ("training step", "mtkit hyper_lora / mtkit lora", "train mtkit hyper_lora", "train mtkit lora", None),
        ("inference", "mtkit hyper_lora / mtkit lora", "infer mtkit hyper_lora", "infer mtkit lora", None),
        ("training step", "mixlora top-2 of 8 / mtkit lora", "train mtkit mixlora", "train mtkit lora", 1.15),
        ("inference", "mixlora top-2 of 8 / mtkit lora", "infer mtkit mixlora", "infer mtkit lora", 1.15),
        ("training step", "hydra_lora top-2 of 8 / mtkit lora", "train mtkit hydra_lora", "train mtkit lora", 1.10),
        ("inference", "hydra_lora top-2 of 8 / mtkit lora", "infer mtkit hydra_lora", "infer mtkit lora", 1.10),
        ("training step", "hydra_lora dense, 4 heads / mtkit lora", "train mtkit hydra_lora dense", "train mtkit lora", 1.10),
        ("inference", "hydra_lora dense, 4 heads / mtkit lora", "infer mtkit hydra_lora dense", "infer mtkit lora", 1.10),
    ]
    print(f"MiniLM-L6 (all-MiniLM-L6-v2), batch {args.batch_size} x {args.seq_len} tokens, LoRA rank {args.rank} on {TARGETS}, "
          f"{args.threads} threads, {args.repeats} interleaved rounds x {args.iters} steps, {args.clock} clock")
    print(f"check: |merged - unmerged| = {diff:.2e}, |mtkit - peft| = {peft_diff:.2e}")
    print(f"{'what':<14} {'ratio':<40} {'median':>7} {'spread (min-max)':>18} {'target':>8} {'ok':>4}")
    for what, label, a, b, target in rows:
        ratios = [x / y for x, y in zip(times[a], times[b], strict=True)]
        med = statistics.median(ratios)
        ok = "" if target is None else ("yes" if med <= target else "NO")
        tgt = "" if target is None else f"<={target:.2f}"
        print(f"{what:<14} {label:<40} {med:7.3f} {min(ratios):8.3f}-{max(ratios):<8.3f} {tgt:>8} {ok:>4}")
    print("\nmedian time per step (ms) and noise (max/min over rounds):")
    for name, values in times.items():
        print(f"  {name:<30} {1000 * statistics.median(values):8.1f}   x{max(values) / min(values):.2f}")


if __name__ == "__main__":
    main()
