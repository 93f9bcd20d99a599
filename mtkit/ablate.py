"""Ablations: run variants of one recipe (same data, seed and step budget) and compare them."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtkit.errors import MtkitError, RecipeError
from mtkit.registry import Registry, load_registry
from mtkit.resolve import load_recipe

__all__ = ["AblationResult", "Variant", "format_cell", "parse_swap", "parse_variant", "run_ablation"]


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: tuple[str, ...]


@dataclass
class AblationResult:
    root: Path
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)


def parse_swap(spec: str) -> list[Variant]:
    """`combiner.type=router,weighted` -> one variant per value, named by the value."""
    key, sep, values = spec.partition("=")
    if not sep or not key or not values:
        raise MtkitError(f"--swap {spec!r} must look like key.path=value1,value2")
    return [Variant(value.strip(), (f"{key.strip()}={value.strip()}",)) for value in values.split(",") if value.strip()]


def parse_variant(spec: str) -> Variant:
    """`single_lora: tasks.a.adapter=shared; tasks.b.adapter=shared` -> a named set of overrides."""
    name, sep, body = spec.partition(":")
    overrides = tuple(part.strip() for part in body.split(";") if part.strip())
    if not sep or not name.strip() or not overrides:
        raise MtkitError(f"--variant {spec!r} must look like 'name: key.path=value; key.path=value'")
    return Variant(name.strip(), overrides)


def _row(run_dir: Path, seconds: float) -> dict[str, Any]:
    results = json.loads((run_dir / "results.json").read_text())
    recipe = json.loads((run_dir / "recipe.json").read_text())
    last = recipe["phases"][-1]
    by_routing = results[last["name"]]
    scores = by_routing.get(last.get("routing", "oracle")) or next(iter(by_routing.values()))
    row: dict[str, Any] = {f"{task}/{metric}": value for task, values in scores.items() for metric, value in values.items()}
    routing_file = run_dir / "routing.json"
    if routing_file.is_file():
        row["routing_accuracy"] = json.loads(routing_file.read_text()).get("mean_routing_accuracy")
    row["trained_params"] = json.loads((run_dir / "parameters.json").read_text())["trained"]
    row["seconds"] = round(seconds, 1)
    return row


def format_cell(column: str, value: Any) -> str:
    """How the markdown file and the printed table show a value: metrics to 4 places, seconds to 1."""
    if value is None:
        return ""
    if column == "seconds":
        return f"{float(value):.1f}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4f}"


def run_ablation(
    recipe_path: str | Path,
    variants: Sequence[Variant],
    overrides: Sequence[str] = (),
    *,
    output_dir: str | Path | None = None,
    callbacks: Callable[[str], Any] | None = None,
    registry: Registry | None = None,
) -> AblationResult:
    """Run every variant into <root>/<variant>/ and write comparison.{csv,md,png} into <root>."""
    from mtkit.runs import run_recipe

    if not variants:
        raise MtkitError("no variants: pass --swap key.path=a,b,... or --variant 'name: key=value; ...'")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise MtkitError(f"variant names repeat ({', '.join(names)}); name each --variant differently")
    registry = registry or load_registry()
    problems: list[str] = []
    base_recipe = None
    for variant in variants:  # validate everything before training anything
        try:
            base_recipe = load_recipe(recipe_path, [*overrides, *variant.overrides], registry).recipe
        except RecipeError as exc:
            problems += [f"variant {variant.name!r}: {p}" for p in exc.problems]
    if problems or base_recipe is None:
        raise RecipeError(problems)
    root = Path(output_dir or Path("runs") / f"{base_recipe.run.name}-ablation")
    result = AblationResult(root, [])
    for variant in variants:
        target = root / variant.name
        tic = time.perf_counter()
        run_recipe(
            recipe_path,
            [*overrides, *variant.overrides, f"run.output_dir={json.dumps(str(target))}"],
            overwrite=True,
            callbacks=callbacks(variant.name) if callbacks else None,
            registry=registry,
        )
        result.rows.append({"variant": variant.name, **_row(target, time.perf_counter() - tic)})
    result.columns = list(dict.fromkeys(k for row in result.rows for k in row))
    _write(result)
    return result


def _write(result: AblationResult) -> None:
    result.root.mkdir(parents=True, exist_ok=True)
    with (result.root / "comparison.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=result.columns)
        writer.writeheader()
        writer.writerows(result.rows)

    lines = ["| " + " | ".join(result.columns) + " |", "|" + "---|" * len(result.columns)]
    lines += ["| " + " | ".join(format_cell(c, row.get(c)) for c in result.columns) + " |" for row in result.rows]
    (result.root / "comparison.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _plot(result)


def _plot(result: AblationResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [c for c in result.columns if "/" in c]
    if not metrics:
        return
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(metrics) * len(result.rows) / 2), 4))
    width = 0.8 / len(result.rows)
    for i, row in enumerate(result.rows):
        ax.bar([m + i * width for m in range(len(metrics))], [row.get(c) or 0 for c in metrics], width, label=row["variant"])
    ax.set_xticks([m + 0.4 - width / 2 for m in range(len(metrics))], metrics, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, ncols=2)
    fig.tight_layout()
    fig.savefig(result.root / "comparison.png", dpi=110)
    plt.close(fig)
