"""Routing analysis: which adapter each task's held-out samples were routed to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mtkit.rundir.evaluate import TaskEvaluation
from mtkit.rundir.layout import RunDir

__all__ = ["routing_summary", "write_routing_analysis"]


def routing_summary(model: Any, evaluations: Mapping[str, TaskEvaluation]) -> dict[str, Any]:
    """Task x adapter shares of argmax choices, routing accuracy, entropy and load per adapter.

    Keys of `evaluations` are task names, or `task/probe` for a task's probe (scored against the task's own adapter).
    """
    adapters = list(model.adapter_names)
    own = {key: model.own_adapter_index[model.task_names.index(key.split("/")[0])].item() for key in evaluations}
    matrix, mean_weights, accuracy, entropy, loads = {}, {}, {}, {}, []
    for task, evaluation in evaluations.items():
        if evaluation.routing is None:
            continue
        weights = evaluation.routing  # (N, K)
        chosen = weights.argmax(dim=-1)
        shares = torch.bincount(chosen, minlength=len(adapters)).float() / max(1, len(chosen))
        matrix[task] = dict(zip(adapters, shares.tolist(), strict=True))
        # Soft combiners (weighted, gating, fusion) mix adapters, so their mean weights say more than argmax shares.
        mean_weights[task] = dict(zip(adapters, weights.mean(0).tolist(), strict=True))
        if own[task] >= 0:
            accuracy[task] = float((chosen == own[task]).float().mean())
        p = weights.clamp_min(1e-12)
        entropy[task] = float(-(p * p.log()).sum(-1).mean())
        loads.append(weights)
    load = torch.cat(loads).mean(0).tolist() if loads else []
    if loads and _input_independent(torch.cat(loads)):
        accuracy = {}  # every sample weighted alike (uniform, global weights, a merge): no routing decision to score
    overall = sum(accuracy.values()) / len(accuracy) if accuracy else None
    return {
        "adapters": adapters,
        "matrix": matrix,
        "mean_weights": mean_weights,
        "routing_accuracy": accuracy,
        "mean_routing_accuracy": overall,
        "mean_entropy": entropy,
        "load": dict(zip(adapters, load, strict=True)) if load else {},
    }


def _input_independent(weights: torch.Tensor) -> bool:
    """Every row (sample) of the recorded routing is the same."""
    return bool(torch.allclose(weights, weights[:1].expand_as(weights), atol=1e-6, rtol=0))


def _heatmap(run_dir: RunDir, summary: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, adapters = list(summary["matrix"]), summary["adapters"]
    values = [[summary["matrix"][t][a] for a in adapters] for t in tasks]
    fig, ax = plt.subplots(figsize=(1.4 + 1.1 * len(adapters), 1.2 + 0.6 * len(tasks)))
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(adapters)), adapters, rotation=30, ha="right")
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_xlabel("chosen adapter")
    ax.set_ylabel("true task")
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(run_dir.path / "routing_heatmap.png", dpi=110)
    plt.close(fig)
    return "routing_heatmap.png"


def write_routing_analysis(
    run_dir: RunDir, model: Any, evaluations: Mapping[str, TaskEvaluation], probes: Mapping[str, TaskEvaluation] | None = None
) -> list[str]:
    """routing.json and routing_heatmap.png (held-out splits; `probes` by "task/probe" beside them); the report's lines."""
    summary = routing_summary(model, evaluations)
    if not summary["matrix"]:
        return []
    probe_summary = routing_summary(model, probes or {})
    if probe_summary["matrix"]:
        summary["probes"] = {key: probe_summary[key] for key in ("matrix", "mean_weights", "routing_accuracy", "mean_entropy")}
    run_dir.write_json("routing.json", summary)
    png = _heatmap(run_dir, summary)
    lines = ["", "## Routing", ""]
    if summary["mean_routing_accuracy"] is not None:
        lines.append(f"Mean routing accuracy: {summary['mean_routing_accuracy']:.4f}")
        lines += [f"- {t}: {a:.4f}" for t, a in summary["routing_accuracy"].items()]
    lines += [f"- mean routing entropy, {t}: {e:.4f}" for t, e in summary["mean_entropy"].items()]
    if "probes" in summary:
        lines += ["", "Routing accuracy on probes (inputs in another form, routed to their task's own adapter):"]
        lines += [f"- {key}: {a:.4f}" for key, a in summary["probes"]["routing_accuracy"].items()]
    lines += ["", f"![routing heatmap]({png})"]
    return lines
