"""Reopen a finished run directory: rebuild its model, score it again, predict new inputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtkit.api.combiner import RoutesByTask
from mtkit.api.errors import MtkitError
from mtkit.api.registry import Registry, load_registry
from mtkit.recipe.resolve import ResolvedRecipe, evaluation_path, resolve, routing_path
from mtkit.recipe.schema import Recipe
from mtkit.rundir.checkpoint import check_state_matches, load_tensors
from mtkit.rundir.layout import RunDir
from mtkit.rundir.manifest import verify_manifest

__all__ = ["LoadedRun", "evaluate_run", "load_run", "predict_loaded", "predict_texts"]


@dataclass
class LoadedRun:
    run_dir: RunDir
    resolved: ResolvedRecipe
    model: Any

    @property
    def recipe(self) -> Recipe:
        return self.resolved.recipe


def load_run(path: str | Path, registry: Registry | None = None, *, verify: bool = True) -> LoadedRun:
    """Rebuild a finished run's model from its directory alone (no training data needed).

    The model routes as the run's last phase did (its routing mode and its task -> adapter mapping). With `verify`,
    the run's files are first checked against its manifest (mtkit.rundir.manifest). Either way a damaged or mismatched file
    is an MtkitError naming it and what it does not match.
    """
    from mtkit.api.interfaces import TaskInfo
    from mtkit.model.build import build_model

    registry = registry or load_registry()
    run_dir = RunDir.open(Path(path))
    if verify:
        verify_manifest(run_dir.path)
    raw = run_dir.read_json("recipe.json")
    if not isinstance(raw, dict):
        raise MtkitError(f"{run_dir.path / 'recipe.json'}: damaged: holds a JSON {type(raw).__name__}, not a recipe (an object of tables)")
    resolved = resolve(raw, registry, str(run_dir.path / "recipe.json"))
    recipe = resolved.recipe
    labels = run_dir.task_labels(list(recipe.tasks))
    infos = {name: TaskInfo(name, i, labels[name]) for i, name in enumerate(recipe.tasks)}
    model = build_model(resolved, infos)
    file = run_dir.path / "model.safetensors"
    tensors = load_tensors(file)
    expected = model.state_dict()
    against = "recipe.json and tasks.json"
    check_state_matches(expected, tensors, file, against)
    lacking = [k for k in expected if k not in tensors and not k.startswith("backbone.")]
    if lacking:
        raise MtkitError(
            f"{file}: does not match the model built from {against}: it lacks {len(lacking)} tensor(s) of the model "
            f"(e.g. {lacking[0]!r}); the files come from different runs"
        )
    model.load_state_dict(tensors, strict=False)
    last = resolved.phases[-1]
    model.start_phase(last.combiner.path, last.task_adapters)
    model.eval()
    return LoadedRun(run_dir, resolved, model)


def evaluate_run(
    path: str | Path,
    *,
    tasks: Sequence[str] | None = None,
    routing: str | None = None,
    split: str = "test",
    probe: str | None = None,
    registry: Registry | None = None,
    verify: bool = True,
) -> dict[str, dict[str, float]]:
    """Scores of a finished run on its held-out (or validation) splits, or on a probe (keys `task/probe`), rebuilt from
    the recorded seeds."""
    import torch

    from mtkit.model.build import build_metrics, build_probes, encode_tasks, load_sources
    from mtkit.rundir.evaluate import evaluate, evaluate_examples

    registry = registry or load_registry()
    loaded_run = load_run(path, registry, verify=verify)
    recipe = loaded_run.recipe
    unknown = sorted(set(tasks or []) - set(recipe.tasks))
    if unknown:
        raise MtkitError(f"--task {', '.join(unknown)}: not a task of this run (tasks: {', '.join(recipe.tasks)})")
    combiner = evaluation_path(routing) if routing is not None else loaded_run.resolved.phases[-1].combiner.path
    if split not in ("test", "validation"):
        raise MtkitError(f"--split {split!r}: use test or validation")
    chosen = list(tasks) if tasks else list(recipe.tasks)
    if probe is not None:
        chosen = [t for t in chosen if probe in recipe.tasks[t].probes]
        if not chosen:
            declared = sorted({f"{t}/{p}" for t, section in recipe.tasks.items() for p in section.probes})
            raise MtkitError(f"--probe {probe!r}: no task of this run declares it (probes: {', '.join(declared) or 'none'})")
    resolved, model = loaded_run.resolved, loaded_run.model
    sources, loaded, _ = load_sources(resolved)
    data = encode_tasks(resolved, model, sources, loaded, chosen, splits=("validation",) if split == "validation" else ("test",))
    if verify:
        _check_same_data(loaded_run.run_dir, data)
    metrics = build_metrics(resolved)
    batch_size, cpu = recipe.run.eval_batch_size, torch.device("cpu")
    if probe is not None:
        probes = build_probes(resolved, model, data)
        return {
            f"{task}/{probe}": evaluate_examples(model, task, probes[task][probe], metrics[task], combiner=combiner, batch_size=batch_size, device=cpu).scores
            for task in chosen
        }
    split_name = "validation" if split == "validation" else "test"  # checked above
    results = evaluate(model, data, metrics, combiner=combiner, batch_size=batch_size, device=cpu, split=split_name)
    return {task: result.scores for task, result in results.items()}


def _check_same_data(run_dir: RunDir, data: dict[str, Any]) -> None:
    """The datasets still give the splits the run recorded (else the scores would be of other data)."""
    recorded = run_dir.read_json("data.json").get("tasks", {})
    for name, task_data in data.items():
        then = {k: v for k, v in recorded.get(name, {}).items() if k in ("available", "train", "test", "validation")}
        now = {k: v for k, v in task_data.split.items() if k in then}
        if then != now:
            raise MtkitError(
                f"{run_dir.path / 'data.json'}: task {name!r} had {then} examples when the run was made, but its dataset now "
                f"gives {now}; the data changed since the run (restore it, or pass --no-verify to score the data as it is)"
            )


def predict_texts(
    path: str | Path, texts: Sequence[str], *, task: str | None = None, registry: Registry | None = None, verify: bool = True
) -> list[dict[str, Any]]:
    """Each input's prediction per task (or for one task), with the routing weights that produced it."""
    loaded_run = load_run(path, registry, verify=verify)
    tasks = loaded_run.recipe.tasks
    if task is not None and task not in tasks:
        raise MtkitError(f"--task {task!r}: not a task of this run (tasks: {', '.join(tasks)})")
    return predict_loaded(loaded_run, texts, [task] * len(texts))


def predict_loaded(
    loaded_run: LoadedRun, texts: Sequence[str], tasks: Sequence[str | None], *, routing: str | None = None, share_passes: bool = True
) -> list[dict[str, Any]]:
    """What `mtkit predict --json` answers for each input, on a run loaded once: `tasks[i]` names the task whose head
    predicts input i (None: every task's head, and the task whose adapter the router chose); `routing` (oracle or
    learned) defaults to the run's last phase's.

    The inputs may ask for different tasks: each task's head runs once over every input that asks for it, each
    sample routed on its own, so a server can batch requests of different tasks into one call. Where the model's
    outputs depend on the input alone (a learned router), heads whose batches hold the same tokens share one
    backbone pass (mtkit.model.shared_passes); `share_passes=False` runs one pass per head (the same answers).
    """
    import torch

    from mtkit.model.shared_passes import SharedPasses
    from mtkit.rundir.evaluate import move

    model, recipe = loaded_run.model, loaded_run.recipe
    assert len(texts) == len(tasks), (len(texts), len(tasks))
    tokenizer = model.backbone.tokenizer
    results: list[dict[str, Any]] = [{"input": text, "predictions": {}} for text in texts]
    combiner = routing_path(routing) if routing is not None else loaded_run.resolved.phases[-1].combiner.path
    decides = not isinstance(model.combiners[combiner], RoutesByTask)  # routing weights worth showing: a combiner's decision
    with torch.no_grad(), model.use_combiner(combiner):
        passes = SharedPasses(model, share=share_passes)
        for name in recipe.tasks:
            rows = [i for i, t in enumerate(tasks) if t is None or t == name]
            if not rows:
                continue
            head = model.heads[name]
            examples = [head.example_from_text(texts[i]) for i in rows]
            columns = {key: [e[key] for e in examples] for key in examples[0]}
            encoded = head.encode(columns, tokenizer, recipe.tasks[name].max_length or recipe.run.max_length)
            batch = move(head.collate(encoded, tokenizer), torch.device("cpu"))
            view = passes.view(name)
            predictions = head.predict(view, batch)
            weights = torch.cat(view.routing) if view.routing else None
            labels = head.task.label_names
            for j, (i, prediction) in enumerate(zip(rows, predictions, strict=True)):
                shown = labels[prediction] if labels and isinstance(prediction, int) else prediction
                entry: dict[str, Any] = {"prediction": shown}
                if weights is not None and decides:
                    entry["routing"] = {a: round(float(w), 4) for a, w in zip(model.adapter_names, weights[j], strict=True)}
                results[i]["predictions"][name] = entry
                if weights is not None and decides and tasks[i] is None:
                    results[i]["detected_task"] = _detected_task(model, weights[j])
    return results


def _detected_task(model: Any, weights: Any) -> str | None:
    """The task whose own adapter got the largest routing weight."""
    adapter = int(weights.argmax())
    owners = [t for t, a in zip(model.task_names, model.own_adapter_index.tolist(), strict=True) if a == adapter]
    return owners[0] if owners else None
