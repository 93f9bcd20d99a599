"""Export a finished run's adapters to other libraries' on-disk formats (`mtkit export`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtkit.api.errors import MtkitError
from mtkit.api.registry import Registry

__all__ = ["export_run"]


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    format: str = "peft",
    adapters: Sequence[str] | None = None,
    *,
    registry: Registry | None = None,
    verify: bool = True,
) -> dict[str, Path]:
    """Write each chosen adapter of a run (default: every one that supports `format`) to out_dir/<adapter id>.

    For `peft`, each folder holds adapter_config.json + adapter_model.safetensors, which
    `peft.PeftModel.from_pretrained(base_model, folder)` loads. A combiner that merges the adapters into one LoRA
    per site (`MergedLora`) exports as the id `combiner`. Returns the folders by id.
    """
    from mtkit.api.adapter import Exportable
    from mtkit.api.combiner import MergedLora
    from mtkit.model.multitask import COMBINER
    from mtkit.rundir.load import load_run

    model = load_run(run_dir, registry, verify=verify).model
    formats = {aid: tuple(a.export_formats) if isinstance(a, Exportable) else () for aid, a in model.adapters.items()}
    merged = isinstance(model.combiner, MergedLora) and COMBINER not in model.adapters
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
        others = sorted({f for fs in formats.values() for f in fs} - {format})
        if able:
            fix = f"export only adapters that support it ({' '.join(f'--adapter {a}' for a in able)})"
        elif others:
            fix = f"pass --format {others[0]}"
        else:
            fix = "these adapter types have no export format"
        raise MtkitError(f"{run_dir}: {which} be exported to format {format!r} (formats by adapter: {supported}); {fix}")
    out = Path(out_dir)
    folders = {}
    for aid in chosen:
        if aid == COMBINER and merged:
            _export_merged(model, out / aid)
        else:
            adapter = model.adapters[aid]
            assert isinstance(adapter, Exportable)
            adapter.export(format, out / aid, backbone=model.backbone)
        folders[aid] = out / aid
    return folders


def _export_merged(model: Any, folder: Path) -> None:
    """The combiner's merged LoRA as one PEFT LoRA (delta = B A x, so alpha = rank); sites of smaller rank are padded
    with zero rows and columns, which leave the delta unchanged."""
    import torch.nn.functional as F

    from mtkit.api.peft_format import write_lora

    weights = {}
    for site, adapters in model.site_adapters().items():
        factors = model.combiner.merged_lora(site, adapters)
        if factors is not None:
            weights[site] = factors
    if not weights:
        raise MtkitError(f"combiner {type(model.combiner).name!r} merges no adapter at any site, so there is nothing to export")
    rank = max(a.shape[0] for a, _ in weights.values())
    padded = {site: (F.pad(a, (0, 0, 0, rank - a.shape[0])), F.pad(b, (0, rank - b.shape[1]))) for site, (a, b) in weights.items()}
    write_lora(folder, padded, rank=rank, alpha=float(rank), dropout=0.0, backbone=model.backbone)
