"""Generation and training on SmolLM2-135M-Instruct: mtkit against PEFT with the same LoRA weights.

    python -m benchmarks.bench_generation [--repeats 5] [--batch 8] [--new-tokens 16] [--threads 1] [--clock wall|cpu]

Three comparisons, each a ratio measured in the same run (the cases run in interleaved rounds, each round every case
once in a rotating order; a figure is the median over rounds of the per-round ratio, the 25th-75th percentile of
those ratios its noise):
- one LoRA: mtkit's batched generation (left padding, KV cache, greedy) against Hugging Face `generate` on a PEFT
  model holding the same LoRA, same prompts, batch and settings (target <= 1.10);
- a mixed-task batch over 5 LoRAs under oracle routing against PEFT's mixed-batch `generate(adapter_names=...)`
  (target <= 1.00);
- a training step (causal-LM loss on prompt + answer, backward, AdamW) with one LoRA against PEFT's (target <= 1.05).
Both sides read one copy of the backbone's weights, and every pair is checked to generate the same tokens.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import transformers

from benchmarks.common import interleaved, ratios
from mtkit import TaskInfo, load_registry
from mtkit.model.build import build_model
from mtkit.model.multitask import MultiTaskModel
from mtkit.recipe.resolve import resolve

BACKBONE = {"type": "hf_causal_lm", "model": "SmolLM2-135M-Instruct"}
TARGETS = ["q_proj", "v_proj"]
PROMPTS = [
    "Review: a gripping, funny and thoroughly humane film about growing up.\nIs this review fresh or rotten?",
    "English: In the beginning God created the heaven and the earth.\nFrench:",
    "Article: Shares in the carmaker fell sharply on Monday after it warned that profits would halve.\nHeadline:",
    "Question: Which planet is closest to the sun?\nA. Venus\nB. Mercury\nC. Mars\nD. Earth\nAnswer:",
    "def add(a: int, b: int) -> int:\n    \"\"\"Return the sum of a and b.\"\"\"\n",
]
TASKS = ("sentiment", "translate", "headline", "qa", "code")
HEAD = {"type": "lm", "prompt_template": "{text}", "target_template": " {headline}"}
PAIRS = (
    ("generate: mtkit, 1 lora", "generate: peft, 1 lora"),
    ("generate: mtkit, 5 loras mixed", "generate: peft, 5 loras mixed"),
)


def mtkit_model(registry: Any, adapters: int, rank: int, backbone: dict[str, Any]) -> MultiTaskModel:
    """SmolLM2 with `adapters` random LoRAs (rank `rank`, q/v), one lm task per adapter, oracle routing."""
    lora = {"type": "lora", "rank": rank, "alpha": 2 * rank, "target_modules": TARGETS, "init": "random", "dropout": 0.0}
    tasks = TASKS[:adapters]
    recipe = {
        "backbone": copy.deepcopy(backbone),
        "adapters": {task: dict(lora) for task in tasks},
        "tasks": {
            task: {"dataset": {"type": "bbc_headlines"}, "head": HEAD, "metrics": ["rouge"]}
            for task in tasks
        },
        "phases": [{"name": "p", "steps": 1, "train": ["adapters"]}],
    }
    return build_model(resolve(recipe, registry, "benchmark"), {task: TaskInfo(task, 0) for task in tasks}).eval()


def peft_copy(model: MultiTaskModel) -> Any:
    """A PEFT LoRA model with the mtkit model's adapters (same names, same weights) on the same backbone tensors."""
    from peft import LoraConfig, get_peft_model

    hf_model = model.backbone.model
    base = type(hf_model)(hf_model.config)  # not a deepcopy: that would carry mtkit's site hooks along
    base.load_state_dict(hf_model.state_dict(), assign=True)  # one copy of the weights for both
    base.generation_config = copy.deepcopy(hf_model.generation_config)
    names = list(model.adapters)
    first = model.adapters[names[0]]
    config = LoraConfig(r=first.config.rank, lora_alpha=first.config.alpha, target_modules=TARGETS, lora_dropout=0.0)
    peft_model = get_peft_model(base, config, adapter_name=names[0])
    for name in names[1:]:
        peft_model.add_adapter(name, config)
    with torch.no_grad():
        for name in names:
            adapter = model.adapters[name]
            for site in adapter.site_names:
                module = peft_model.base_model.model.get_submodule(site.removeprefix("model."))
                a, b = adapter.matrices(site)
                module.lora_A[name].weight.copy_(a)
                module.lora_B[name].weight.copy_(b)
    return peft_model.eval()


def prompts(tokenizer: Any, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`batch` prompts cycling over the five tasks, left-padded, and their task ids."""
    texts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    tokenizer.padding_side = "left"
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"], torch.arange(batch) % len(PROMPTS)


def cases(
    batch: int, new_tokens: int, rank: int, train_length: int, backbone: dict[str, Any] = BACKBONE
) -> tuple[dict[str, Callable[[], object]], list[str]]:
    """The six timed calls, and the checks that each mtkit/PEFT pair generates the same tokens."""
    registry = load_registry()
    one, five = mtkit_model(registry, 1, rank, backbone), mtkit_model(registry, 5, rank, backbone)
    five.backbone.model.load_state_dict(one.backbone.model.state_dict(), assign=True)
    peft_one, peft_five = peft_copy(one), peft_copy(five)
    tokenizer = one.backbone.tokenizer
    ids, mask, task_ids = prompts(tokenizer, batch)
    options = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False, "temperature": None, "top_p": None,
               "top_k": None, "pad_token_id": tokenizer.pad_token_id}
    names = [TASKS[int(t)] for t in task_ids]
    zeros = torch.zeros_like(task_ids)

    def generate(model: Any, **extra: Any) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.no_grad():
                return model.generate(input_ids=ids, attention_mask=mask, **options, **extra)[:, ids.shape[1] :]
        return run

    def mtkit_generate(model: MultiTaskModel, tasks: torch.Tensor) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.no_grad(), model.use_combiner("oracle"):
                return model.generate(ids, mask, tasks, **options)
        return run

    out = {
        "generate: mtkit, 1 lora": mtkit_generate(one, zeros),
        "generate: peft, 1 lora": generate(peft_one),
        "generate: mtkit, 5 loras mixed": mtkit_generate(five, task_ids),
        "generate: peft, 5 loras mixed": generate(peft_five, adapter_names=names),
    }
    checks = []
    for a, b in PAIRS:
        same = torch.equal(out[a](), out[b]())
        checks.append(f"{a.split(': ', 1)[1]}: {'same tokens as PEFT' if same else 'TOKENS DIFFER from PEFT'}")
    out["train: mtkit, 1 lora"], out["train: peft, 1 lora"] = training_steps(one, peft_one, batch, train_length)
    return out, checks


def training_steps(
    model: MultiTaskModel, peft_model: Any, batch: int, length: int
) -> tuple[Callable[[], object], Callable[[], object]]:
    """One AdamW step of the LoRA on a causal-LM loss over `batch` sequences of `length` tokens (the first half
    masked as prompt), in mtkit and in PEFT."""
    torch.manual_seed(0)
    ids = torch.randint(1000, model.backbone.model.config.vocab_size, (batch, length))
    labels = ids.clone()
    labels[:, : length // 2] = -100
    lm_batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    task = model.task_names[0]
    model.train()
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("adapters."))
    peft_model.train()
    mt_opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    peft_opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)

    def step(loss: Callable[[], torch.Tensor], optimizer: torch.optim.Optimizer) -> Callable[[], object]:
        def run() -> object:
            optimizer.zero_grad(set_to_none=True)
            loss().backward()
            optimizer.step()
            return None
        return run

    mtkit_loss = lambda: model([(task, lm_batch)])[0][task]
    peft_loss = lambda: peft_model(input_ids=ids, attention_mask=lm_batch["attention_mask"], labels=labels).loss
    return step(mtkit_loss, mt_opt), step(peft_loss, peft_opt)


ROWS = [
    ("generation, 1 LoRA", "generate: mtkit, 1 lora", "generate: peft, 1 lora", 1.10),
    ("generation, 5 LoRAs, mixed batch", "generate: mtkit, 5 loras mixed", "generate: peft, 5 loras mixed", 1.00),
    ("training step, 1 LoRA", "train: mtkit, 1 lora", "train: peft, 1 lora", 1.05),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8, help="prompts per generate call (and sequences per training step)")
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens generated per prompt (every row: all of them)")
    parser.add_argument("--train-length", type=int, default=96, help="tokens per training sequence")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 gives steadier ratios on a shared machine)")
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (steadier on a busy shared machine; use with --threads 1)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore")
    runs, checks = cases(args.batch, args.new_tokens, args.rank, args.train_length)
    times = interleaved(runs, args.repeats, args.warmup, clock=time.perf_counter if args.clock == "wall" else time.process_time)
    print(f"\nSmolLM2-135M-Instruct, cpu, {args.threads} thread(s), batch {args.batch}, "
          f"{args.new_tokens} new tokens (greedy, KV cache), LoRA rank {args.rank} on {', '.join(TARGETS)}, "
          f"training sequences of {args.train_length} tokens; "
          f"{args.repeats} interleaved rounds after {args.warmup} warm-up, {args.clock} clock")
    for check in checks:
        print(f"check: {check}")
    header = f"{'mtkit ms':>9} {'PEFT ms':>9} {'ratio':>6} {'(p25-p75)':>14} {'target':>7} {'ok':>3}"
    print(f"{'comparison (mtkit / PEFT)':<34} {header}")
    for label, mine, theirs, target in ROWS:
        median, low, high = ratios(times[mine], times[theirs])
        ok = "yes" if median <= target else "NO"
        print(f"{label:<34} {1000 * statistics.median(times[mine]):9.1f} {1000 * statistics.median(times[theirs]):9.1f} "
              f"{median:6.3f} {f'({low:.3f}-{high:.3f})':>14} {f'<={target:.2f}':>7} {ok:>3}")


if __name__ == "__main__":
    main()
