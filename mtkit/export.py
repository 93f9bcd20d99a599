"""Export a finished run's adapters to other libraries' on-disk formats (`mtkit export`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
    verify: bool = True,
) -> dict[str, Path]:
    """Write each chosen adapter of a run (default: every one that supports `format`) to out_dir/<adapter id>.

    For `peft`, each folder holds adapter_config.json + adapter_model.safetensors, which
    `peft.PeftModel.from_pretrained(base_model, folder)` loads. Returns the folders by adapter id.
    """
    from mtkit.adapter import Exportable
    from mtkit.runs import load_run

    model = load_run(run_dir, registry, verify=verify).model
    formats = {aid: tuple(a.export_formats) if isinstance(a, Exportable) else () for aid, a in model.adapters.items()}
    if not formats:
        raise MtkitError(f"{run_dir}: the run has no adapters, so there is nothing to export")
    chosen = list(adapters) if adapters else sorted(aid for aid, f in formats.items() if format in f)
    unknown = sorted(set(chosen) - set(model.adapters))
    if unknown:
        raise MtkitError(f"--adapter {unknown[0]!r}: not an adapter of this run (adapters: {', '.join(sorted(model.adapters))})")
    unable = sorted(aid for aid in chosen if format not in formats[aid])
    if unable or not chosen:
        supported = "; ".join(
            f"{aid} ({type(model.adapters[aid]).name}): {', '.join(formats[aid]) or 'no format'}" for aid in sorted(formats)
        )
        which = f"adapter {unable[0]!r} cannot" if unable else "no adapter of this run can"
        usable = sorted({f for fs in formats.values() for f in fs})
        fix = f"pass --format {usable[0]}" if usable else "these adapter types have no export"
        raise MtkitError(f"{run_dir}: {which} be exported to format {format!r} (formats by adapter: {supported}); {fix}")
    out = Path(out_dir)
    folders = {}
    for aid in chosen:
        adapter = model.adapters[aid]
        assert isinstance(adapter, Exportable)
        adapter.export(format, out / aid, backbone=model.backbone)
        folders[aid] = out / aid
    return folders
