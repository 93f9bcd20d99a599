"""Third-party plugins really installed with pip (into a --target folder on PYTHONPATH)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.core.test_cli import mtkit
from tests.plugin_project import write_plugin_project


def install_plugin(tmp_path: Path, dist: str, module: str, source: str) -> Path:
    """Build and pip-install a one-module plugin distribution; returns the site folder."""
    project = write_plugin_project(tmp_path, dist, module, source, version="0.3.1")
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(site), str(project)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return site


BROKEN = """
raise ImportError("this plugin needs libfoo, which is not installed")
"""

GOOD = """
from mtkit import ComponentConfig, hookimpl

class ShoutConfig(ComponentConfig):
    '''Exact match of upper-cased strings.'''

@hookimpl
def mtkit_register_components(register):
    register("mtkit_shout.metric:ShoutMetric", kind="metric", name="shout_match", config=ShoutConfig)
"""

OLD_API = """
MTKIT_PLUGIN_API = 1
from mtkit import hookimpl

@hookimpl
def mtkit_register_components(register):
    pass
"""

MISSPELLED = """
from mtkit import ComponentConfig, hookimpl

class EchoConfig(ComponentConfig):
    '''Never registered: the hook below is misspelled.'''

@hookimpl
def mtkit_register_component(register):
    register("mtkit_typo.metric:EchoMetric", kind="metric", name="echo_match", config=EchoConfig)
"""


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("plugins")
    install_plugin(tmp, "mtkit-broken", "mtkit_broken", BROKEN)
    install_plugin(tmp, "mtkit-shout", "mtkit_shout", GOOD)
    install_plugin(tmp, "mtkit-old", "mtkit_old", OLD_API)
    install_plugin(tmp, "mtkit-typo", "mtkit_typo", MISSPELLED)
    return str(tmp / "site")


def _plugins(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    assert result.returncode == 0, result.stderr
    return {p["name"]: p for p in json.loads(result.stdout)["plugins"]}


def test_plugins_broken_import_is_reported_and_skipped(plugin_site: str) -> None:
    result = mtkit("list-components", "--json", env={"PYTHONPATH": plugin_site})
    plugins = _plugins(result)
    broken = plugins["mtkit_broken"]
    assert broken["status"] == "failed" and broken["distribution"] == "mtkit-broken" and broken["version"] == "0.3.1"
    assert "this plugin needs libfoo" in str(broken["error"])
    assert plugins["mtkit_shout"]["status"] == "ok" and plugins["mtkit_shout"]["components"] == ["metric:shout_match"]
    names = {c["name"] for c in json.loads(result.stdout)["components"]}
    assert {"lora", "hf_encoder", "shout_match"} <= names
    text = mtkit("list-components", env={"PYTHONPATH": plugin_site})
    assert text.returncode == 0 and "shout_match" in text.stdout
    assert "plugin mtkit_broken (mtkit-broken 0.3.1): failed" in text.stderr


def test_plugins_incompatible_api_is_reported_and_skipped(plugin_site: str) -> None:
    old = _plugins(mtkit("list-components", "--json", env={"PYTHONPATH": plugin_site}))["mtkit_old"]
    assert old["status"] == "incompatible" and "plugin API 1 is not supported by this mtkit (it provides API 2)" in str(old["error"])
    assert "API 2: combiners take `setup=CombinerSetup(...)`" in str(old["error"])  # what changed since, so the author knows


def test_plugins_can_be_disabled_by_name_or_all_third_party(plugin_site: str) -> None:
    by_name = _plugins(mtkit("list-components", "--json", env={"PYTHONPATH": plugin_site, "MTKIT_DISABLE_PLUGINS": "mtkit_broken"}))
    assert by_name["mtkit_broken"]["status"] == "disabled" and by_name["mtkit_shout"]["status"] == "ok"
    third = _plugins(mtkit("list-components", "--json", env={"PYTHONPATH": plugin_site, "MTKIT_DISABLE_PLUGINS": "third-party"}))
    assert {n for n, p in third.items() if p["status"] == "disabled"} == {"mtkit_broken", "mtkit_shout", "mtkit_old", "mtkit_typo"}
    assert all(p["status"] == "ok" for p in third.values() if p["distribution"] == "mtkit")


def test_plugins_strict_mode_turns_a_failure_into_an_error(plugin_site: str) -> None:
    result = mtkit("list-components", env={"PYTHONPATH": plugin_site, "MTKIT_STRICT_PLUGINS": "1"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "mtkit_broken (mtkit-broken 0.3.1) failed" in result.stderr or "mtkit_broken" in result.stderr


def test_plugins_misspelled_hook_is_reported_with_its_name(plugin_site: str) -> None:
    plugins = _plugins(mtkit("list-components", "--json", env={"PYTHONPATH": plugin_site}))
    typo = plugins["mtkit_typo"]
    assert typo["status"] == "failed" and typo["components"] == []
    assert "unknown hook 'mtkit_register_component'" in str(typo["error"]) and "mtkit_register_components" in str(typo["error"])
    assert plugins["mtkit_shout"]["status"] == "ok"  # the others still load
    strict = mtkit("list-components", env={"PYTHONPATH": plugin_site, "MTKIT_STRICT_PLUGINS": "1", "MTKIT_DISABLE_PLUGINS": "mtkit_broken,mtkit_old"})
    assert strict.returncode == 2 and "Traceback" not in strict.stderr and "mtkit_register_component" in strict.stderr
