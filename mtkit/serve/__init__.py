"""`mtkit serve`: a finished run behind an HTTP API (FastAPI on uvicorn, or Ray Serve), with dynamic batching.

The top layer beside the CLI: it imports rundir and api; only mtkit.cli imports it. FastAPI and uvicorn are the
optional extra `mtkit[serve]`, imported only when a server is built.
"""

from __future__ import annotations

from mtkit.serve.service import AUTO, ServeSettings, Service

__all__ = ["AUTO", "ServeSettings", "Service"]
