"""The CLI as a user runs it: real subprocesses of the installed `mtkit` command."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, write_toml


def mtkit(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mtkit", *args], capture_output=True, text=True, env=full_env, cwd=cwd or ROOT, timeout=timeout
    )


def test_cli_list_components_json_names_plugin_distribution_and_version() -> None:
    result = mtkit("list-components", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    kinds = {c["kind"] for c in data["components"]}
    assert kinds == {"backbone", "adapter", "combiner", "head", "scheduler", "dataset", "metric", "balancer"}
    lora = next(c for c in data["components"] if c["name"] == "lora")
    assert lora["distribution"] == "mtkit" and lora["version"] and lora["plugin"] == "adapters"
    assert all(p["status"] == "ok" for p in data["plugins"])


def test_cli_list_components_filters_by_kind_and_rejects_unknown_kind() -> None:
    result = mtkit("list-components", "--kind", "scheduler", "--json")
    assert {c["kind"] for c in json.loads(result.stdout)["components"]} == {"scheduler"}
    bad = mtkit("list-components", "--kind", "widget")
    assert bad.returncode == 2 and "'widget' is not a component kind" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_listing_commands_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from mtkit.cli.app import app\n"
        "for args in (['list-components'], ['show', 'adapter', 'lora'], ['schema'], ['validate', 'recipes/quickstart.toml']):\n"
        "    r = CliRunner().invoke(app, args)\n"
        "    assert r.exit_code == 0, (args, r.output)\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False False"


def test_cli_show_prints_config_fields() -> None:
    result = mtkit("show", "adapter", "lora")
    assert result.returncode == 0, result.stderr
    for text in ("rank", "alpha", "target_modules", "Rank R of the update", "16.0"):
        assert text in result.stdout
    missing = mtkit("show", "adapter", "lorra")
    assert missing.returncode == 2 and "'lorra' is not a registered adapter" in missing.stderr


def test_cli_schema_spells_out_component_types() -> None:
    result = mtkit("schema")
    schema = json.loads(result.stdout)
    adapters = schema["$defs"]["adapter_component"]["anyOf"]
    lora = next(s for s in adapters if s["properties"]["type"]["const"] == "lora")
    assert lora["properties"]["rank"]["exclusiveMinimum"] == 0 and lora["additionalProperties"] is False
    assert schema["properties"]["adapters"]["additionalProperties"] == {"$ref": "#/$defs/adapter_component"}


def test_cli_validate_bad_recipe_lists_four_problems_and_exits_2(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    bad = copy.deepcopy(tiny_recipe)
    bad["phases"][0]["stpes"] = 3  # misspelled key
    bad["run"]["seed"] = "zero"  # wrong type
    bad["adapters"]["topic"]["rank"] = -2  # negative rank
    bad["tasks"]["topic"]["head"]["type"] = "clasification"  # unknown component
    path = write_toml(tmp_path / "bad.toml", bad)
    result = mtkit("validate", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for fragment in (
        f"{path}: phases.0.stpes: unknown key; did you mean 'steps'?",
        f"{path}: run.seed: input should be a valid integer",
        f"{path}: adapters.topic.rank: input should be greater than 0 (got -2)",
        f"{path}: tasks.topic.head.type 'clasification' is not a registered head (known: classification",
    ):
        assert fragment in result.stderr, result.stderr
    run = mtkit("run", str(path), cwd=tmp_path)
    assert run.returncode == 2 and "4 problems:" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "runs").exists()
    good = write_toml(tmp_path / "good.toml", tiny_recipe)
    assert mtkit("validate", str(good), "--set", "adapters.topic.rank=4").returncode == 0
    overridden = mtkit("validate", str(good), "--set", "adapters.topic.rank=-2")
    assert overridden.returncode == 2 and "adapters.topic.rank: input should be greater than 0" in overridden.stderr


def test_cli_run_errors_are_clear_for_missing_file_and_bad_override(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    missing = mtkit("run", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "no such recipe file" in missing.stderr and "Traceback" not in missing.stderr
    path = write_toml(tmp_path / "tiny.toml", tiny_recipe)
    override = mtkit("run", str(path), "--set", "adapters.topic.alpha=-1", cwd=tmp_path)
    assert override.returncode == 2 and "adapters.topic.alpha: input should be greater than 0" in override.stderr


def test_cli_run_unmatched_adapter_target_names_the_key(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    tiny_recipe["adapters"]["topic"]["target_modules"] = ["q_proj"]
    path = write_toml(tmp_path / "tiny.toml", tiny_recipe)
    result = mtkit("run", str(path), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "adapters.topic.target_modules ['q_proj'] matches no Linear site" in result.stderr


def test_cli_run_head_label_count_mismatch_is_a_clear_error(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    tiny_recipe["tasks"]["sentiment"]["head"]["num_labels"] = 3  # the dataset has 2 labels
    path = write_toml(tmp_path / "tiny.toml", tiny_recipe)
    result = mtkit("run", str(path), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{path}: tasks.sentiment.head.num_labels: 3 classes, but the dataset has 2 labels" in result.stderr


def test_cli_run_scheduler_refused_at_its_phase_names_file_and_key(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    """A component that refuses to build while training (a phase's scheduler) names the recipe file and phase."""
    tiny_recipe["phases"][1]["scheduler"] = {"type": "curriculum", "start_weights": [1.0, 2.0, 3.0]}  # 3 weights, 2 tasks
    tiny_recipe["run"]["output_dir"] = str(tmp_path / "run")
    path = write_toml(tmp_path / "tiny.toml", tiny_recipe)
    result = mtkit("run", str(path), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"{path}: phases.1.scheduler: start_weights has 3 values for 2 tasks" in result.stderr, result.stderr
    checkpoints = tmp_path / "run" / "checkpoints"  # phase 0 finished and its checkpoint stays
    assert (checkpoints / (checkpoints / "latest").read_text(encoding="utf-8").strip()).is_dir()


def test_cli_validate_temperature_on_a_combiner_without_one_exits_2_naming_the_key(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    bad = copy.deepcopy(tiny_recipe)
    bad["combiner"] = {"type": "gating"}
    bad["phases"][1].update(routing="learned", temperature={"start": 5.0, "end": 0.1})
    path = write_toml(tmp_path / "gating.toml", bad)
    result = mtkit("validate", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{path}: phases.1.temperature: the phase runs combiner 'gating', which has no temperature" in result.stderr
    bad["combiner"] = {"type": "router"}  # a combiner that reads one: the same schedule is fine
    assert mtkit("validate", str(write_toml(tmp_path / "router.toml", bad))).returncode == 0
    bad["phases"][1]["routing"] = "oracle"  # task ids route: the oracle runs, and it has no temperature either
    oracle = mtkit("validate", str(write_toml(tmp_path / "oracle.toml", bad)))
    assert oracle.returncode == 2 and "phases.1.temperature: the phase routes by task id, so the oracle runs" in oracle.stderr
