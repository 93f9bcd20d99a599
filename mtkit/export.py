"""Export a finished run's adapters to other libraries' on-disk formats (`mtkit export`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtkit.errors import MtkitError
from mtkit.registry import Registry

__all__ = ["export_run"]


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    format: str = "peft",
    adapters: Sequence[str] | None = None,
    *,
    registry: Registry | None = None,
) -> dict[str, Path]:
    """Write each chosen adapter of a run (default: every one that supports `format`) to out_dir/<adapter id>.

    For `peft`, each folder holds adapter_config.json + adapter_model.safetensors, which
    `peft.PeftModel.from_pretrained(base_model, folder)` loads. A combiner that merges the adapters into one LoRA
    per site (`MergedLora`) exports as the id `combiner`. Returns the folders by id.
    """
    from mtkit.adapter import Exportable
    from mtkit.combiner import MergedLora
    from mtkit.model import COMBINER
    from mtkit.runs import load_run

    model = load_run(run_dir, registry).model
    capable = {aid for aid, a in model.adapters.items() if isinstance(a, Exportable) and format in a.export_formats}
    merged = isinstance(model.combiner, MergedLora) and format == "peft" and COMBINER not in model.adapters
    if merged:
        capable.add(COMBINER)
    chosen = list(adapters) if adapters else sorted(capable)
    unknown = sorted(set(chosen) - set(model.adapters) - ({COMBINER} if merged else set()))
    if unknown:
        raise MtkitError(f"--adapter {unknown[0]!r}: not an adapter of this run (adapters: {', '.join(sorted(capable | set(model.adapters)))})")
    unable = sorted(set(chosen) - capable)
    if unable or not chosen:
        which = f"adapter {unable[0]!r} ({type(model.adapters[unable[0]]).name})" if unable else "no adapter of this run"
        raise MtkitError(f"{run_dir}: {which} cannot be exported to format {format!r}; exportable here: {', '.join(sorted(capable)) or 'none'}")
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

    from mtkit.peft_format import write_lora

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
