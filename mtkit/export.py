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
) -> dict[str, Path]:
    """Write each chosen adapter of a run (default: every one that supports `format`) to out_dir/<adapter id>.

    For `peft`, each folder holds adapter_config.json + adapter_model.safetensors, which
    `peft.PeftModel.from_pretrained(base_model, folder)` loads. Returns the folders by adapter id.
    """
    from mtkit.interfaces import Exportable
    from mtkit.runs import load_run

    model = load_run(run_dir, registry).model
    capable = {aid for aid, a in model.adapters.items() if isinstance(a, Exportable) and format in a.export_formats}
    chosen = list(adapters) if adapters else sorted(capable)
    unknown = sorted(set(chosen) - set(model.adapters))
    if unknown:
        raise MtkitError(f"--adapter {unknown[0]!r}: not an adapter of this run (adapters: {', '.join(sorted(model.adapters))})")
    unable = sorted(set(chosen) - capable)
    if unable or not chosen:
        which = f"adapter {unable[0]!r} ({type(model.adapters[unable[0]]).name})" if unable else "no adapter of this run"
        raise MtkitError(f"{run_dir}: {which} cannot be exported to format {format!r}; exportable here: {', '.join(sorted(capable)) or 'none'}")
    out = Path(out_dir)
    folders = {}
    for aid in chosen:
        adapter = model.adapters[aid]
        assert isinstance(adapter, Exportable)
        adapter.export(format, out / aid, backbone=model.backbone)
        folders[aid] = out / aid
    return folders
