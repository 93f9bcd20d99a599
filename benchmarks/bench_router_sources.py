"""What the router's input representation costs: a DYNAMO training step with each `combiner.source`, as a ratio to
the `embeddings` source (mean-pooled input embeddings, no extra work).

    python -m benchmarks.bench_router_sources [--repeats 15] [--batch 32] [--length 48] [--threads 1]

Three LoRAs on the packaged MiniLM and a router (`recipes/dynamo.toml`'s adapters and router). Each step is the
recipe's joint phase: a forward pass with learned routing, a loss on the output, backward through adapters and
router, an optimiser step; and its router phase (adapters frozen: only the router trains). Configurations run
interleaved, each figure the median over repeats of its time over the `embeddings` source's time in the same repeat
(25th-75th percentile of that ratio as the noise). `frozen_layer:N` runs layers 0-N of the frozen backbone once
more, `frozen_pass` the whole frozen backbone once more; `layer:N` reads the adapted pass itself (no extra work,
but then no adapter acts in layers 0-N).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch

from benchmarks.common import LORA, Bench, interleaved, ratios, training_step

TASKS = ("sentiment", "topic", "subject")
SOURCES = ("embeddings", "layer:1", "frozen_layer:1", "frozen_layer:2", "frozen_pass")


def cases(bench: Bench, batch: int, length: int) -> dict[str, Callable[[], object]]:
    torch.manual_seed(0)
    ids = torch.randint(1000, bench.bare.model.config.vocab_size, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.long)
    task_ids = torch.arange(batch) % len(TASKS)
    adapters = {task: dict(LORA) for task in TASKS}
    out: dict[str, Callable[[], object]] = {}
    for phase, train in (("joint", ("adapters.", "combiner.")), ("router", ("combiner.",))):
        for source in SOURCES:
            model = bench.model(adapters, {"type": "router", "source": source}, {task: task for task in TASKS})
            out[f"{phase}: {source}"] = training_step(model, ids, mask, task_ids, "learned", train)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=48, help="tokens per input (dynamo.toml's max_length)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 gives steadier ratios on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = cases(Bench(), args.batch, args.length)
    times = interleaved(runs, args.repeats, args.warmup)
    print(f"\ncpu, batch {args.batch}, length {args.length}, {args.threads} thread(s), {args.repeats} interleaved repeats after {args.warmup} warm-up")
    print(f"{'training step (phase: router source)':<36} {'median ms':>10} {'x embeddings':>13} {'(p25-p75)':>14}")
    for name, values in times.items():
        reference = times[f"{name.split(':')[0]}: embeddings"]
        median, low, high = ratios(values, reference)
        print(f"{name:<36} {1000 * statistics.median(values):10.1f} {median:13.3f} {f'({low:.3f}-{high:.3f})':>14}")


if __name__ == "__main__":
    main()
