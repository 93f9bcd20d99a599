"""`mtkit new-plugin`: derived names, refusals, and generated packages that pass their own tests."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtkit import KINDS, MtkitError
from mtkit.cli.scaffold import new_plugin, plugin_names
from tests.core.test_cli import mtkit


def test_scaffold_names_derive_from_the_plugin_name() -> None:
    names = plugin_names("My-Gate", "combiner")
    assert (names.type_name, names.distribution, names.module, names.class_name) == (
        "my_gate", "mtkit-my-gate", "mtkit_my_gate", "MyGateCombiner"
    )
    assert plugin_names("mtkit-my_gate", "metric").module == "mtkit_my_gate"


@pytest.mark.parametrize("name", ["9lives", "my gate!", "", "mtkit-"])
def test_scaffold_rejects_a_name_that_is_no_identifier(name: str) -> None:
    with pytest.raises(MtkitError, match="must start with a letter"):
        plugin_names(name, "adapter")


def test_scaffold_rejects_an_unknown_kind_and_a_taken_name(tmp_path: Path) -> None:
    with pytest.raises(MtkitError, match="'widget' is not a component kind"):
        new_plugin("x", "widget", tmp_path)
    with pytest.raises(MtkitError, match="'lora' is already registered by plugin adapters"):
        new_plugin("lora", "adapter", tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("kind", KINDS)
def test_scaffold_writes_a_lazily_registered_package_for_every_kind(kind: str, tmp_path: Path) -> None:
    project = new_plugin("demo-thing", kind, tmp_path)
    module = project / "src" / "mtkit_demo_thing"
    files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert files == sorted(
        [".gitignore", "README.md", "pyproject.toml", "src/mtkit_demo_thing/__init__.py", "src/mtkit_demo_thing/config.py",
         f"src/mtkit_demo_thing/{kind}.py", "tests/test_demo_thing.py"]
    )
    for path in project.rglob("*.py"):
        ast.parse(path.read_text(), filename=str(path))  # every template renders to valid Python
    init = (module / "__init__.py").read_text()
    assert "MTKIT_PLUGIN_API = 2" in init and f'"mtkit_demo_thing.{kind}:DemoThing{kind.capitalize()}"' in init
    # The config module is what listing imports: it must not pull in torch.
    config_imports = {n.names[0].name if isinstance(n, ast.Import) else n.module for n in ast.walk(ast.parse((module / "config.py").read_text())) if isinstance(n, ast.Import | ast.ImportFrom)}
    assert config_imports <= {"__future__", "pydantic", "mtkit", "typing"}, config_imports
    pyproject = (project / "pyproject.toml").read_text()
    assert 'name = "mtkit-demo-thing"' in pyproject and 'demo_thing = "mtkit_demo_thing"' in pyproject
    readme = (project / "README.md").read_text()
    assert '"demo_thing"' in readme and "twine upload" in readme and "pytest" in readme


def test_scaffold_cli_refuses_to_overwrite_an_existing_folder(tmp_path: Path) -> None:
    first = mtkit("new-plugin", "twice", "--kind", "metric", "--dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout and "mtkit-twice" in first.stdout
    marker = tmp_path / "mtkit-twice" / "src" / "mtkit_twice" / "metric.py"
    marker.write_text("# my edits\n")
    again = mtkit("new-plugin", "twice", "--kind", "head", "--dir", str(tmp_path))
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr
    assert marker.read_text() == "# my edits\n"
    bad = mtkit("new-plugin", "x", "--kind", "widget", "--dir", str(tmp_path))
    assert bad.returncode == 2 and "'widget' is not a component kind" in bad.stderr


@pytest.mark.slow
def test_scaffold_every_kind_but_adapter_installs_and_passes_its_own_tests(tmp_path: Path) -> None:
    """pip-installs one generated package per kind (into a --target folder) and runs their tests.

    The adapter package is covered by test_scaffold_venv once mtkit.testing.adapter exists.
    """
    kinds = [k for k in KINDS if k != "adapter"]
    projects = [new_plugin(f"demo-{k}", k, tmp_path) for k in kinds]
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(site), *map(str, projects)],
        check=True, capture_output=True, timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    listing = subprocess.run([sys.executable, "-m", "mtkit", "list-components", "--json"], env=env, capture_output=True, text=True, timeout=120)
    plugins = {p["name"]: p for p in json.loads(listing.stdout)["plugins"]}
    for kind in kinds:
        assert plugins[f"demo_{kind}"]["status"] == "ok" and plugins[f"demo_{kind}"]["components"] == [f"{kind}:demo_{kind}"]
    # Lazy registration: building the registry with every generated plugin imports no torch.
    probe = "from mtkit import load_registry; import sys; r = load_registry(); print(len(r.components()), 'torch' in sys.modules)"
    lazy = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert lazy.returncode == 0 and lazy.stdout.split()[1] == "False", lazy.stdout + lazy.stderr
    tests = [str(p / "tests") for p in projects]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=importlib", *tests],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert " failed" not in result.stdout and "passed" in result.stdout
