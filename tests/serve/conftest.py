"""Tiny trained runs (a routed classifier on a random BERT, a routed generator on a random Llama) and real
`mtkit serve` processes on 127.0.0.1 serving them."""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mtkit.testing import TINY_LLAMA
from tests.conftest import ROOT, tiny_recipe_table, write_toml

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def train(tmp: Path, recipe: dict[str, Any]) -> Path:
    from mtkit.train.run import run_recipe

    recipe["run"] |= {"output_dir": str(tmp / "run"), "checkpoint_every": 0}
    return Path(run_recipe(write_toml(tmp / "recipe.toml", recipe)).path)


@pytest.fixture(scope="session")
def classify_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classification tasks on a tiny random BERT, a learned router deciding per input (sentiment, topic)."""
    recipe = tiny_recipe_table()
    recipe["combiner"] = {"type": "router", "hidden_dim": 16}
    recipe["phases"][1] = {"name": "router", "steps": 3, "train": ["combiner"], "routing": "learned", "batching": "mixed", "lr": 1e-3}
    return train(tmp_path_factory.mktemp("classify"), recipe)


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Headline generation on a tiny random Llama: the task's LoRA, a second LoRA, and a learned router."""
    recipe = {
        "run": {"name": "lm", "seed": 0, "batch_size": 4, "eval_batch_size": 4, "max_length": 48},
        "backbone": copy.deepcopy(TINY_LLAMA),
        "adapters": {
            "headline": {"type": "lora", "rank": 4, "init": "random", "target_modules": ["q_proj", "v_proj"]},
            "extra": {"type": "lora", "rank": 4, "init": "random", "target_modules": ["q_proj", "v_proj"]},
        },
        "combiner": {"type": "router", "hidden_dim": 16},
        "tasks": {
            "headline": {
                "dataset": {"type": "bbc_headlines", "max_train_examples": 16, "max_eval_examples": 4},
                "head": {"type": "lm", "prompt_template": "Article: {text} Headline:", "target_template": " {headline}", "max_new_tokens": 6},
                "metrics": ["rouge"],
            }
        },
        "phases": [
            {"name": "adapters", "steps": 2, "train": ["adapters"], "lr": 1e-3},
            {"name": "router", "steps": 2, "train": ["combiner"], "routing": "learned", "lr": 1e-3},
        ],
    }
    return train(tmp_path_factory.mktemp("lm"), recipe)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A `mtkit serve` process and its base URL."""

    process: subprocess.Popen[str]
    url: str

    def metric(self, name: str) -> float:
        """One sample of /metrics by its full name (labels included); 0 when it is not there yet."""
        for line in httpx.get(f"{self.url}/metrics").text.splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self) -> str:
        """SIGTERM, then the exit checked (uvicorn re-raises the signal once it has shut down gracefully); returns
        what the server wrote to stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        _, stderr = self.process.communicate(timeout=60)
        assert self.process.returncode in (0, -signal.SIGTERM), stderr[-3000:]
        assert "Traceback" not in stderr, stderr[-3000:]
        return stderr


def start_server(run: Path, *options: str) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "mtkit", "serve", str(run), "--port", str(port), *options]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"mtkit serve exited with {process.returncode}: {process.communicate()[1][-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return Server(process, url)
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("mtkit serve did not answer /health within 120 s")


@pytest.fixture(scope="module")
def classify_server(classify_run: Path) -> Iterator[Server]:
    """Small limits, so that the bad-request corpus can reach them; a 300 ms window, so concurrent requests batch."""
    server = start_server(classify_run, "--max-wait-ms", "300", "--max-inputs", "4", "--max-input-chars", "200", "--max-body-bytes", "2000")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lm_server(lm_run: Path) -> Iterator[Server]:
    server = start_server(lm_run, "--max-wait-ms", "200", "--max-inputs", "4", "--max-input-chars", "200", "--max-body-bytes", "2000", "--max-tokens", "8")
    yield server
    server.stop()


def mtkit_predict_json(run: Path, *args: str) -> list[dict[str, Any]]:
    """What `mtkit predict RUN ARGS --json` prints, parsed."""
    done = subprocess.run([sys.executable, "-m", "mtkit", "predict", str(run), *args, "--json"], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]
