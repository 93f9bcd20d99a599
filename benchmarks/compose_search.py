"""A bounded search of zero-shot and merge settings on a finished `recipes/compose.toml` run's validation split.

    python -m benchmarks.compose_search RUN_DIR [--threads 2] [--out search.json]

RUN_DIR is any run of the comparison (e.g. `runs/compose-ablation/oracle/seed-0`): its adapters and heads are the
library every variant composes. Each setting below swaps in its combiner and scores every task's validation split
(carved from the training examples, `validation_size`) under learned routing, so the settings are chosen without
reading the held-out test split the comparison reports. The grid is fixed and small on purpose: Arrow's top_k and
temperature; for merges that sum the adapters (linear, svd, magnitude_prune, dare_linear) the weight (1/K, an
average, or 1, a sum); for pruning merges the density.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

GRID: list[tuple[str, str, dict[str, Any]]] = [
    ("oracle", "oracle", {}),
    *[(f"arrow top_k={k} t={t}", "arrow", {"top_k": k, "temperature": t}) for k in (1, 2, 3) for t in (1.0, 0.1)],
    *[(f"{m} weight={w}", "merge", {"method": m, "weight": w}) for m in ("linear", "svd") for w in ("1/K", 1.0)],
    *[(f"{m} weight={w} density=0.5", "merge", {"method": m, "weight": w, "density": 0.5}) for m in ("magnitude_prune", "dare_linear") for w in ("1/K", 1.0)],
    *[(f"{m} density={d}", "merge", {"method": m, "weight": 1.0, "density": d}) for m in ("ties", "dare_ties", "magnitude_prune", "dare_linear") for d in (0.2, 0.5, 0.8)],
]
"""(label, combiner type, params); weight "1/K" is one over the number of adapters."""


def search(run_dir: str) -> list[dict[str, Any]]:
    from mtkit import load_registry
    from mtkit.model.build import build_metrics, combiner_setup, encode_tasks, load_sources
    from mtkit.recipe.resolve import COMBINER_PATH
    from mtkit.rundir.evaluate import evaluate
    from mtkit.rundir.load import load_run

    registry = load_registry()
    loaded = load_run(run_dir, registry)
    model, resolved = loaded.model, loaded.resolved
    sources, examples, _ = load_sources(resolved)
    data = encode_tasks(resolved, model, sources, examples)
    metrics = build_metrics(resolved)
    setup = combiner_setup(resolved.recipe, model.backbone, dict(model.adapters))
    rows = []
    seen: set[str] = set()
    for label, kind, params in GRID:
        params = {k: (1.0 / len(setup.adapter_names) if v == "1/K" else v) for k, v in params.items()}
        key = json.dumps([kind, params], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        entry = registry.get("combiner", kind)
        model.set_combiner(COMBINER_PATH, entry.load()(entry.config_class.model_validate(params), setup=setup).eval())
        results = evaluate(model, data, metrics, combiner=COMBINER_PATH, batch_size=resolved.recipe.run.eval_batch_size,
                           device=torch.device("cpu"), split="validation")
        scores = {task: result.scores["accuracy"] for task, result in results.items()}
        rows.append({"setting": label, "type": kind, "params": params, **scores, "mean": sum(scores.values()) / len(scores)})
        print(f"{label:40s} " + " ".join(f"{task} {value:.4f}" for task, value in scores.items()) + f"  mean {rows[-1]['mean']:.4f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="Also write the rows as JSON here.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = search(args.run_dir)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
