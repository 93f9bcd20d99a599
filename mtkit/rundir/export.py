"""Export a finished run to what PEFT and transformers load without mtkit (`mtkit export --format peft|hf`).

`peft`: one PEFT folder per adapter. An adapter that serves one task, whose head a transformers task model can hold
(`mtkit.peft_format.PeftHead`), is written as PEFT's matching task type with the head in `modules_to_save`, so
`AutoPeftModelFor<Task>.from_pretrained(folder)` gives mtkit's outputs. `hf`: one merged transformers model per task
(the LoRA folded into the weights by PEFT's `merge_and_unload`, the head included) that transformers loads alone.
Every folder gets a README.md (base model, task, labels, how to load, the run's manifest hash); a learned combiner,
which neither format can hold, is described in `combiner.json` beside the folders.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtkit.api.errors import MtkitError
from mtkit.api.registry import Registry
from mtkit.recipe.resolve import COMBINER_PATH
from mtkit.rundir.manifest import manifest_digest

__all__ = ["FORMATS", "export_run"]

FORMATS = ("peft", "hf")
"""Formats `mtkit export` writes."""

_LOADERS = {
    None: ("peft", "PeftModel", "PeftModel.from_pretrained(AutoModel.from_pretrained(BASE), FOLDER)"),
    "FEATURE_EXTRACTION": ("peft", "AutoPeftModel", "AutoPeftModel.from_pretrained(FOLDER)"),
    "SEQ_CLS": ("peft", "AutoPeftModelForSequenceClassification", "AutoPeftModelForSequenceClassification.from_pretrained(FOLDER, num_labels=LABELS)"),
    "TOKEN_CLS": ("peft", "AutoPeftModelForTokenClassification", "AutoPeftModelForTokenClassification.from_pretrained(FOLDER, num_labels=LABELS)"),
    "QUESTION_ANS": ("peft", "AutoPeftModelForQuestionAnswering", "AutoPeftModelForQuestionAnswering.from_pretrained(FOLDER)"),
    "CAUSAL_LM": ("peft", "AutoPeftModelForCausalLM", "AutoPeftModelForCausalLM.from_pretrained(FOLDER)"),
}


@dataclass
class _Task:
    """What one exported folder holds besides its LoRA: the task it serves and its head, or why it has none."""

    name: str | None
    head: Any = None  # PeftHeadWeights
    labels: tuple[str, ...] = ()
    missing: str | None = None  # why the head was left behind


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    format: str = "peft",
    adapters: Sequence[str] | None = None,
    *,
    registry: Registry | None = None,
    verify: bool = True,
) -> dict[str, Path]:
    """Write the run's adapters (default: every one that supports `format`) under out_dir; returns the folders by name.

    For `peft`, out_dir/<adapter id> holds adapter_config.json + adapter_model.safetensors (+ README.md), with the
    head of the one task the adapter serves when a transformers task model can hold it. A combiner that merges the
    adapters into one LoRA per site (`MergedLora`) exports as the id `combiner`. For `hf`, out_dir/<task> holds a
    merged transformers model of each task the chosen adapters serve.
    """
    from mtkit.rundir.load import load_run

    if format not in FORMATS:
        raise MtkitError(f"{run_dir}: --format {format!r} is not an export format (known: {', '.join(sorted(FORMATS))}); pass --format peft or --format hf")
    loaded = load_run(run_dir, registry, verify=verify)
    model, recipe = loaded.model, loaded.recipe
    chosen, merged = _chosen(model, run_dir, format, adapters)
    served = {task: recipe.adapter_for_task(task, recipe.phases[-1]) for task in recipe.tasks}
    out = Path(out_dir)
    digest = manifest_digest(Path(run_dir))
    folders: dict[str, Path] = {}
    if format == "peft":
        for aid in chosen:
            if aid in merged:
                _export_merged(model, out / aid)
                task = _Task(None, missing="it is the run's merging combiner, not one task's adapter")
            else:
                task = _task_of(model, aid, [t for t, a in served.items() if a == aid])
                _write_adapter(model, aid, out / aid, task)
            task_type = json.loads((out / aid / "adapter_config.json").read_text(encoding="utf-8"))["task_type"]
            _write_readme(out / aid, model, task, task_type, run_dir, digest)
            folders[aid] = out / aid
    else:
        tasks = [t for t, a in served.items() if a in chosen and a not in merged]
        if not tasks:
            raise MtkitError(f"{run_dir}: no task is served by the chosen adapters ({', '.join(chosen)}), so there is no task model to write")
        found = {name: _task_of(model, served[name], [name]) for name in tasks}  # type: ignore[arg-type]
        for name, task in found.items():
            if task.missing is not None:
                raise MtkitError(f"{run_dir}: task {name!r} cannot be written as a transformers model: {task.missing}; or leave its adapter out with --adapter")
        for name, task in found.items():
            _write_merged_model(model, served[name], out / name, task)  # type: ignore[arg-type]
            _write_readme(out / name, model, task, "hf", run_dir, digest)
            folders[name] = out / name
    _describe_combiner(model, out)
    return folders


def _chosen(model: Any, run_dir: str | Path, asked: str, adapters: Sequence[str] | None) -> tuple[list[str], set[str]]:
    """The adapters to export (checked against what each can write) and the ids that stand for a merged combiner.

    Both formats start from an adapter's PEFT form (`hf` merges it into the model), so both need adapters that have one.
    """
    from mtkit.api.adapter import Exportable, LoraFactors
    from mtkit.api.combiner import MergedLora
    from mtkit.model.multitask import COMBINER

    format = "peft"

    formats = {aid: tuple(a.export_formats) if isinstance(a, Exportable) else ("peft",) if isinstance(a, LoraFactors) else () for aid, a in model.adapters.items()}
    merged = isinstance(model.combiners[COMBINER_PATH], MergedLora) and COMBINER not in model.adapters
    if merged:
        formats[COMBINER] = ("peft",)
    if not formats:
        raise MtkitError(f"{run_dir}: the run has no adapters, so there is nothing to export")
    chosen = list(adapters) if adapters else sorted(aid for aid, f in formats.items() if format in f)
    unknown = sorted(set(chosen) - set(formats))
    if unknown:
        raise MtkitError(f"--adapter {unknown[0]!r}: not an adapter of this run (adapters: {', '.join(sorted(formats))})")
    unable = sorted(aid for aid in chosen if format not in formats[aid])
    if unable or not chosen:
        kinds = {aid: "merged LoRA" if aid == COMBINER and merged else type(model.adapters[aid]).name for aid in formats}
        supported = "; ".join(f"{aid} ({kinds[aid]}): {', '.join(formats[aid]) or 'no format'}" for aid in sorted(formats))
        which = f"adapter {unable[0]!r} ({kinds[unable[0]]}) cannot" if unable else "no adapter of this run can"
        able = sorted(aid for aid, f in formats.items() if format in f)
        fix = f"export only adapters that support it ({' '.join(f'--adapter {a}' for a in able)})" if able else "these adapter types have no export format"
        raise MtkitError(f"{run_dir}: {which} be exported to format {asked!r} (formats by adapter: {supported}); {fix}")
    return chosen, {COMBINER} if merged else set()


def _task_of(model: Any, aid: str, tasks: list[str]) -> _Task:
    """The task adapter `aid` serves and its head as a transformers task model holds it, or why there is none."""
    from mtkit.api.peft_format import PeftHead, task_prefix

    if len(tasks) != 1:
        why = f"it serves {len(tasks)} tasks ({', '.join(tasks)})" if tasks else "it serves no task under oracle routing"
        return _Task(None, missing=f"{why}, so no one head goes with it")
    head = model.heads[tasks[0]]
    labels = tuple(head.task.label_names or ())
    if not isinstance(head, PeftHead):
        return _Task(tasks[0], labels=labels, missing=f"head type {type(head).name!r} has no transformers task model")
    try:
        probe = head.peft_head("")
        weights = head.peft_head(task_prefix(model.backbone, probe.task_type))
    except MtkitError as exc:
        return _Task(tasks[0], labels=labels, missing=str(exc))
    return _Task(tasks[0], weights, labels)


def _lora_weights(adapter: Any) -> tuple[dict[str, tuple[Any, Any]], int, float]:
    """{site: (A, B)}, the rank and alpha (scale * rank) of a LoRA-shaped adapter."""
    weights, scales = {}, set()
    for site in adapter.site_names:
        a, b, scale = adapter.lora_factors(site)
        weights[site] = (a, b)
        scales.add(float(scale))
    rank = next(iter(weights.values()))[0].shape[0]
    assert len(scales) == 1 and all(a.shape[0] == rank for a, _ in weights.values()), "one rank and scale per adapter"
    return weights, rank, scales.pop() * rank


def _write_adapter(model: Any, aid: str, folder: Path, task: _Task) -> None:
    from mtkit.api.adapter import LoraFactors
    from mtkit.api.peft_format import write_lora

    adapter = model.adapters[aid]
    if not isinstance(adapter, LoraFactors):
        adapter.export("peft", folder, backbone=model.backbone)
        return
    weights, rank, alpha = _lora_weights(adapter)
    head = task.head
    write_lora(
        folder,
        weights,
        rank=rank,
        alpha=alpha,
        dropout=float(getattr(adapter.config, "dropout", 0.0)),
        backbone=model.backbone,
        task_type=head.task_type if head is not None else None,
        head=head.tensors if head is not None else None,
        modules_to_save=head.modules_to_save if head is not None else None,
    )


def _write_merged_model(model: Any, aid: str, folder: Path, task: _Task) -> None:
    """A transformers task model with the adapter merged in by PEFT and the task's head, saved with its tokenizer."""
    import transformers
    from peft import PeftModel

    from mtkit.api.peft_format import TASK_MODELS

    hf_model = model.backbone.get_submodule(model.backbone.hf_model_path())
    task_type = task.head.task_type
    config = hf_model.config.__class__.from_dict(hf_model.config.to_dict())
    config.num_labels = 2 if task_type == "QUESTION_ANS" else _num_labels(task) or config.num_labels  # start and end for QA
    if task.labels and task_type != "QUESTION_ANS":
        config.id2label = dict(enumerate(task.labels))
        config.label2id = {label: i for i, label in enumerate(task.labels)}
    task_model = getattr(transformers, TASK_MODELS[task_type]).from_config(config)
    base = task_model if task_model.base_model is task_model or task_type == "CAUSAL_LM" else task_model.base_model
    # Token classification and QA models build their encoder without the pooler, so the backbone's pooler is left out.
    missing = base.load_state_dict(hf_model.state_dict(), strict=False).missing_keys
    assert not missing, f"the task model's base lacks none of the backbone's weights: {missing[:3]}"
    with tempfile.TemporaryDirectory() as tmp:
        _write_adapter(model, aid, Path(tmp), task)
        merged = PeftModel.from_pretrained(task_model, tmp).merge_and_unload()
    merged.eval()
    merged.save_pretrained(folder)
    model.backbone.tokenizer.save_pretrained(folder)


def _num_labels(task: _Task) -> int:
    """The number of outputs of the task's classifier (classes or tags)."""
    weight = task.head.tensors.get("classifier.weight") if task.head is not None else None
    return int(weight.shape[0]) if weight is not None else len(task.labels)


def _write_readme(folder: Path, model: Any, task: _Task, task_type: str | None, run_dir: str | Path, digest: str | None) -> None:
    from mtkit.api.peft_format import TASK_MODELS, base_model_name

    backbone = model.backbone
    base = base_model_name(backbone) or "(unknown)"
    random = bool(getattr(getattr(backbone, "config", None), "random_init", False))
    lines = [f"# {task.name or folder.name}, exported by mtkit", ""]
    lines.append(f"- base model: `{base}`" + (" (the run's backbone was randomly initialised, so only `--format hf` carries its weights)" if random else ""))
    if task.name:
        lines.append(f"- task: `{task.name}` (mtkit head `{type(model.heads[task.name]).name}`)")
    if task.labels:
        lines.append("- labels: " + ", ".join(f"{i} `{label}`" for i, label in enumerate(task.labels)))
    lines.append(f"- mtkit run: `{run_dir}`, manifest.json sha256 `{digest or 'none (the run has no manifest)'}`")
    lines += ["", "## Load", "", "```python"]
    if task_type == "hf":
        auto = TASK_MODELS[task.head.task_type]
        lines += [f"from transformers import {auto}, AutoTokenizer", f'model = {auto}.from_pretrained("{folder}")', f'tokenizer = AutoTokenizer.from_pretrained("{folder}")']
    else:
        module, name, call = _LOADERS[task_type]
        imports = f"from {module} import {name}" + ("\nfrom transformers import AutoModel" if task_type is None else "")
        call = call.replace("FOLDER", f'"{folder}"').replace("BASE", f'"{base}"').replace("LABELS", str(_num_labels(task)))
        lines += [imports, "model = " + call]
    lines += ["```", ""]
    if task_type in ("SEQ_CLS", "TOKEN_CLS"):
        lines += ["PEFT builds the task model from the base model, so pass `num_labels` (the head's size) as above.", ""]
    if task.missing:
        lines += [f"The task head is not in this folder: {task.missing}. mtkit keeps it in the run directory (`mtkit predict {run_dir}`).", ""]
    (folder / "README.md").write_text("\n".join(lines), encoding="utf-8")


def _describe_combiner(model: Any, out: Path) -> None:
    """A combiner other than routing by task is mtkit-specific: say so beside the exported folders, never drop it silently."""
    from mtkit.api.combiner import RoutesByTask

    combiner = model.combiners[COMBINER_PATH]
    if isinstance(combiner, RoutesByTask):
        return
    kind = type(combiner).name
    note = {
        "combiner": kind,
        "mtkit_specific": True,
        "adapters": list(model.adapters),
        "note": (
            f"the run composes its adapters with combiner {kind!r}, which PEFT and transformers cannot represent; "
            "each exported folder reproduces one adapter alone (oracle routing by task, the run's `oracle` scores); "
            "the composition itself runs in mtkit (`mtkit predict RUN`)"
            + ("; the folder `combiner` holds its merge as one LoRA" if "combiner" in model.adapters or _merges(model) else "")
        ),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "combiner.json").write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")


def _merges(model: Any) -> bool:
    from mtkit.api.combiner import MergedLora

    return isinstance(model.combiners[COMBINER_PATH], MergedLora)


def _export_merged(model: Any, folder: Path) -> None:
    """The combiner's merged LoRA as one PEFT LoRA (delta = B A x, so alpha = rank); sites of smaller rank are padded
    with zero rows and columns, which leave the delta unchanged."""
    import torch.nn.functional as F

    from mtkit.api.peft_format import write_lora

    weights = {}
    for site, adapters in model.site_adapters().items():
        factors = model.combiners[COMBINER_PATH].merged_lora(site, adapters)
        if factors is not None:
            weights[site] = factors
    if not weights:
        raise MtkitError(f"combiner {type(model.combiners[COMBINER_PATH]).name!r} merges no adapter at any site, so there is nothing to export")
    rank = max(a.shape[0] for a, _ in weights.values())
    padded = {site: (F.pad(a, (0, 0, 0, rank - a.shape[0])), F.pad(b, (0, rank - b.shape[1]))) for site, (a, b) in weights.items()}
    write_lora(folder, padded, rank=rank, alpha=float(rank), dropout=0.0, backbone=model.backbone)
