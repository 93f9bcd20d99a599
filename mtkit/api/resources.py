"""Locating the pip-packaged models and corpora (DATA.md) without importing them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mtkit.api.errors import MtkitError

__all__ = ["package_dir"]


def package_dir(module: str, pip_spec: str) -> Path:
    """The folder of an installed package, found without importing it (several have side effects).

    Raises:
        MtkitError: naming the pip command that installs it.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MtkitError(f"package {module!r} is not installed; install it with: pip install --no-deps {pip_spec}")
    return Path(next(iter(spec.submodule_search_locations)))
