"""Variants x seeds -> one resolved, validated recipe per run.

A variant that changes a component's `type` (a `--swap combiner.type=...` on a recipe that configures
its router) keeps the keys the new type accepts and drops the others, reading what a type accepts
from its registered config class (no torch import). A key the user set explicitly for that component
is never dropped: that is an error instead.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtkit.api.errors import MtkitError, RecipeError, UnknownComponentError
from mtkit.api.registry import Registry
from mtkit.recipe.file import read_recipe_file
from mtkit.recipe.overrides import apply_overrides
from mtkit.recipe.resolve import resolve
from mtkit.recipe.schema import component_tables, runs_recipe_combiner
from mtkit.sweep.variants import Variant

__all__ = ["Job", "drop_unaccepted_keys", "drop_untrainable_combiner", "resolve_jobs"]


@dataclass(frozen=True)
class Job:
    """One run of a sweep: a variant at one seed.

    Attributes:
        variant: The variant's name.
        seed_index: Position of the seed in the sweep's seed list; runs of two variants at one position are paired.
        seed: The run's `run.seed`.
        recipe: The resolved raw recipe (as `recipe.json` records it), before the plan sets where it runs.
        dropped: Component keys dropped because a type swap's new type does not accept them (`combiner.hidden_dim`).
    """

    variant: str
    seed_index: int
    seed: int
    recipe: dict[str, Any] = field(repr=False)
    dropped: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.variant}/seed-{self.seed}"


def _override_keys(overrides: Sequence[str]) -> list[str]:
    return [item.partition("=")[0].strip() for item in overrides]


def drop_unaccepted_keys(
    before: Mapping[str, Any], raw: dict[str, Any], explicit: Mapping[str, str], registry: Registry, where: str
) -> tuple[list[str], list[str]]:
    """Drop, in place, the keys of each component whose `type` differs from `before` that its new type does not accept.

    Args:
        before: The recipe as its file has it (the types the recipe was configured for).
        raw: The recipe after overrides; changed in place.
        explicit: Key paths the user set explicitly, each with the option that set it (`--set`).
        registry: Where each type's config class is looked up.
        where: Names the variant in errors (`variant 'oracle'`).

    Returns:
        The dropped key paths, and a problem for every explicitly set key the new type does not accept.
    """
    old_types = {path: table.get("type") for path, _, table in component_tables(before) if isinstance(table, Mapping)}
    dropped: list[str] = []
    problems: list[str] = []
    for path, kind, table in component_tables(raw):
        new_type = table.get("type") if isinstance(table, dict) else None
        old_type = old_types.get(path)
        if not isinstance(new_type, str) or old_type is None or new_type == old_type:
            continue
        try:
            accepted = registry.get(kind, new_type).config_class.model_fields
        except UnknownComponentError:
            continue  # validation names the unknown type with the known ones
        for key in [k for k in table if k != "type" and k not in accepted]:
            full = f"{path}.{key}"
            setter = next((option for p, option in explicit.items() if p == full or p.startswith(full + ".")), None)
            if setter is None:
                del table[key]
                dropped.append(full)
            else:
                allowed = ", ".join(sorted(accepted)) or "no keys"
                problems.append(
                    f"{where}: {full} is set by {setter}, but {kind} type {new_type!r} does not accept {key!r} "
                    f"(it accepts: {allowed}); set it only in variants whose {path}.type accepts it"
                )
    return dropped, problems


def fit_phases_to_combiner(before: Mapping[str, Any], raw: dict[str, Any], explicit: Mapping[str, str], registry: Registry) -> list[str]:
    """Adjust the phases, in place, to a combiner a swap brought in: without parameters (oracle, uniform), take
    `combiner` out of the phases' `train` selectors (a training phase left with nothing to train only evaluates,
    steps = 0, also where `--set` gave it a step budget meant for the variants that train there); without a
    temperature (gating, weighted, uniform), drop the temperature schedules of the phases it runs in.

    Returns the changes, as notes for the comparison. Keys the user set (`--set`, the variant) are left as set.
    """
    old = before.get("combiner") if isinstance(before.get("combiner"), Mapping) else None
    new = raw.get("combiner") if isinstance(raw.get("combiner"), Mapping) else None
    new_type = (new or {}).get("type")
    if not isinstance(new_type, str) or new_type == (old or {}).get("type"):
        return []
    try:
        config_class = registry.get("combiner", new_type).config_class
    except UnknownComponentError:
        return []
    phases = raw.get("phases")
    if not isinstance(phases, list):
        return []
    notes = []
    for i, phase in enumerate(phases):
        if not isinstance(phase, dict):
            continue
        if not getattr(config_class, "has_temperature", False) and runs_recipe_combiner(phase) and "temperature" in phase:
            key = f"phases.{i}.temperature"
            if not any(k == key or k.startswith(f"{key}.") for k in explicit):
                phase.pop("temperature")
                notes.append(f"phases.{i}.temperature")
        train = phase.get("train")
        if getattr(config_class, "trainable", True) or not isinstance(train, list) or "combiner" not in train or f"phases.{i}.train" in explicit:
            continue
        phase["train"] = [sel for sel in train if sel != "combiner"]
        notes.append(f"phases.{i}.train.combiner")
        if not phase["train"] and ((phase.get("steps") or 0) > 0 or phase.get("epochs")):
            phase.pop("epochs", None)
            phase["steps"] = 0  # nothing left to train: the phase only evaluates
            notes.append(f"phases.{i}.steps")
    return notes


def _seed_overrides(raw: Mapping[str, Any], seed: int, split_seeds: bool) -> list[str]:
    overrides = [f"run.seed={seed}"]
    if split_seeds:
        tasks = raw.get("tasks")
        overrides += [f"tasks.{task}.dataset.split_seed={seed}" for task in (tasks if isinstance(tasks, Mapping) else {})]
    return overrides


def _seed_conflicts(overrides: Sequence[str], where: str, split_seeds: bool) -> list[str]:
    problems = []
    for key in _override_keys(overrides):
        if key == "run.seed":
            problems.append(f"{where}: sets run.seed, which --seeds sets for every run; drop that override or --seeds")
        elif split_seeds and key.startswith("tasks.") and key.endswith(".dataset.split_seed"):
            problems.append(f"{where}: sets {key}, which --split-seeds sets to the run's seed; drop that override or --split-seeds")
    return problems


def resolve_jobs(
    recipe_path: str | Path,
    variants: Sequence[Variant],
    overrides: Sequence[str],
    seeds: Sequence[int] | None,
    registry: Registry,
    *,
    split_seeds: bool = False,
) -> list[Job]:
    """Every variant at every seed as a validated recipe; all problems of all variants raised together.

    Args:
        recipe_path: The recipe file the variants change.
        variants: The variants, in the order the comparison shows them.
        overrides: `--set` overrides applied to every variant (before the variant's own).
        seeds: Seeds to repeat each variant at (`run.seed`); None runs each variant once at its recipe's seed.
        registry: Component registry (for validation and type swaps).
        split_seeds: Also set every task's `dataset.split_seed` to the seed.

    Raises:
        RecipeError: Listing every problem, each naming its variant.
    """
    if not variants:
        raise MtkitError("no variants: pass --swap key.path=a,b,... or --variant 'name: key=value; ...'")
    names = [v.name for v in variants]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise MtkitError(f"variant names repeat ({', '.join(repeated)}); name each --variant differently")
    if split_seeds and not seeds:
        raise MtkitError("--split-seeds draws each run's data splits with its seed; give the seeds with --seeds (e.g. --seeds 0-4)")
    source = str(recipe_path)
    file_raw = read_recipe_file(recipe_path)
    jobs: list[Job] = []
    problems: list[str] = []
    for variant in variants:
        where = f"variant {variant.name!r}"
        explicit = {key: "--set" for key in _override_keys(overrides)}
        explicit.update({key: variant.origin for key in _override_keys(variant.overrides)})
        if seeds:
            problems += _seed_conflicts([*overrides, *variant.overrides], where, split_seeds)
        for index, seed in enumerate(seeds or [None]):
            extra = _seed_overrides(file_raw, seed, split_seeds) if seed is not None else []
            try:
                raw = apply_overrides(copy.deepcopy(file_raw), [*overrides, *variant.overrides, *extra], source)
            except RecipeError as exc:
                problems += [f"{where}: {p}" for p in exc.problems]
                break
            dropped, drop_problems = drop_unaccepted_keys(file_raw, raw, explicit, registry, where)
            dropped += fit_phases_to_combiner(file_raw, raw, explicit, registry)
            if drop_problems:
                problems += drop_problems  # validation would only repeat them as unknown keys
                break
            try:
                recipe = resolve(raw, registry, source).recipe
            except RecipeError as exc:
                problems += [f"{where}: {p}" for p in exc.problems]
                break  # the other seeds of this variant repeat the same problems
            jobs.append(Job(variant.name, index, recipe.run.seed, raw, tuple(dropped)))
    if problems:
        raise RecipeError(list(dict.fromkeys(problems)))
    return jobs
