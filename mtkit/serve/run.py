"""Start a server: uvicorn on this machine, or the same app as a Ray Serve deployment with N replicas."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from mtkit.api.errors import MtkitError
from mtkit.serve.service import ServeSettings, Service

__all__ = ["build_app", "require", "serve_local", "serve_ray"]


def require(ray: bool = False) -> None:
    """An MtkitError saying what to install when the serving packages are missing."""
    missing = []
    for name in ("fastapi", "uvicorn"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MtkitError(f"mtkit serve needs {' and '.join(missing)}, not installed here; pip install 'mtkit[serve]'")
    if ray:
        try:
            import ray.serve  # its own import checks its dependencies
        except ImportError as exc:
            raise MtkitError(f"mtkit serve --ray needs Ray Serve ({exc}); pip install 'mtkit[ray-serve]'") from None


def build_app(run_dir: str | Path, settings: ServeSettings, verify: bool = True) -> Any:
    """The FastAPI app serving a run directory (its model loaded once, now)."""
    from mtkit.serve.app import create_app

    settings.check()
    settings.apply_threads()
    return create_app(Service.open(run_dir, verify=verify), settings)


def serve_local(app: Any, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM, then answer the requests in flight before exiting."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def serve_ray(run_dir: str | Path, settings: ServeSettings, *, host: str, port: int, replicas: int, verify: bool = True) -> None:
    """The same app as a Ray Serve deployment: `replicas` copies, each loading the run and batching on its own."""
    from ray import serve

    if replicas < 1:
        raise MtkitError(f"--replicas {replicas}: must be at least 1")
    settings.check()
    Service.open(run_dir, verify=verify)  # fail here, with the CLI's message, rather than inside a replica
    path = str(Path(run_dir).resolve())

    def builder() -> Any:  # a function (Ray Serve calls it on each replica), not a partial (taken for an ASGI app)
        return build_app(path, settings, verify)

    deployment = serve.deployment(serve.ingress(builder)(), name="mtkit", num_replicas=replicas)
    serve.start(http_options={"host": host, "port": port})
    serve.run(deployment.bind(), name="mtkit", route_prefix="/", blocking=True)
