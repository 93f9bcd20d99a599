"""A fresh virtual environment with mtkit installed from this checkout, as a user would have it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.plugin_project import write_plugin_project


class Venv:
    """A virtual environment (system site-packages for torch & co., mtkit installed into it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bin = path / "bin"
        self.env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS"}}
        self.env.update(
            HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", COLUMNS="200",
            PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}", VIRTUAL_ENV=str(path),
        )

    def run(self, *args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args], cwd=cwd, env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout
        )

    def pip_install(self, project: Path) -> None:
        # Offline, like a user's `pip install .`: dependencies come from the system site-packages.
        result = self.run(
            self.bin / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", project, cwd=project.parent
        )
        assert result.returncode == 0, result.stderr

    def mtkit(self, *args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(self.bin / "mtkit", *args, cwd=cwd, env=env, timeout=600)


def _see_running_environment(env: Venv) -> None:
    """Let `env` import what the environment running the tests has installed (torch & co., pip, setuptools).

    `--system-site-packages` reaches the base interpreter's site-packages only; when the tests run in
    a virtual environment (the README's set-up done in a venv), the dependencies live in that venv,
    so its site-packages are added after `env`'s own (a .pth line adds the directory, not its .pth
    files: this checkout's editable mtkit stays invisible there).
    """
    if sys.prefix == sys.base_prefix:
        return
    (purelib,) = (env.path / "lib").glob("python*/site-packages")
    running = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (purelib / "running-environment.pth").write_text("".join(f"{path}\n" for path in running))


def _bad_plugin(parent: Path, dist: str, module: str, body: str, submodules: dict[str, str] | None = None) -> Path:
    return write_plugin_project(parent, dist, module, body, version="2.0.0", submodules=submodules)


# Registers fine (its config loads without its module), but importing its combiner module fails: a recipe that
# uses it may fail, one that does not must run (aux-loss names are read from the config class, not the module).
LAZY_BROKEN = """
from typing import ClassVar

from mtkit import CombinerConfig, hookimpl

class BrokenConfig(CombinerConfig):
    '''A combiner whose module cannot be imported.'''
    aux_loss_names: ClassVar[tuple[str, ...]] = ("broken_aux",)

@hookimpl
def mtkit_register_components(register):
    register("mtkit_lazy_broken.combiner:BrokenCombiner", kind="combiner", name="lazy_broken", config=BrokenConfig)
"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """mtkit (a non-editable install of a copy of this checkout) plus two bad plugins that must be skipped."""
    root = tmp_path_factory.mktemp("venv")
    # The new environment does not see this checkout's editable install. --without-pip: it uses the
    # system's pip and setuptools (ensurepip would seed a setuptools too old for PEP 639 licenses).
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(root / "env")], check=True, timeout=120)
    env = Venv(root / "env")
    _see_running_environment(env)
    source = root / "mtkit-src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("mtkit", "plugins"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    env.pip_install(source)
    where = env.run(env.bin / "python", "-c", "import mtkit; print(mtkit.__file__)", cwd=root)
    assert where.returncode == 0 and where.stdout.startswith(str(env.path)), (where.stdout, where.stderr)
    env.pip_install(_bad_plugin(root, "mtkit-broken-demo", "mtkit_broken_demo", 'raise ImportError("needs libfoo, not installed")\n'))
    env.pip_install(
        _bad_plugin(
            root, "mtkit-old-demo", "mtkit_old_demo",
            """
            from mtkit import hookimpl
            MTKIT_PLUGIN_API = 0

            @hookimpl
            def mtkit_register_components(register):
                raise AssertionError("an incompatible plugin's hook must never run")
            """,
        )
    )
    env.pip_install(
        _bad_plugin(
            root, "mtkit-lazy-broken", "mtkit_lazy_broken", LAZY_BROKEN,
            {"combiner": 'raise ImportError("the lazy combiner needs libbar, not installed")\n'},
        )
    )
    return env
