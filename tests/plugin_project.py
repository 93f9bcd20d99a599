"""Writing a one-module plugin distribution for tests that pip-install real plugins."""

from __future__ import annotations

import textwrap
from pathlib import Path


def write_plugin_project(
    parent: Path, dist: str, module: str, source: str, *, version: str, submodules: dict[str, str] | None = None
) -> Path:
    """A pyproject-based project whose package `module` is registered in the `mtkit` entry-point group
    (`submodules`: more modules of the package, name -> source)."""
    project = parent / dist
    (project / module).mkdir(parents=True)
    (project / module / "__init__.py").write_text(textwrap.dedent(source))
    for name, body in (submodules or {}).items():
        (project / module / f"{name}.py").write_text(textwrap.dedent(body))
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "{dist}"
            version = "{version}"
            [project.entry-points.mtkit]
            {module} = "{module}"
            [tool.setuptools]
            packages = ["{module}"]
            """
        )
    )
    return project
