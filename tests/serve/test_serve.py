"""`mtkit serve` as a real process on 127.0.0.1, spoken to with httpx and the official openai client."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.serve.conftest import Server, httpx, mtkit_predict_json, start_server

pytestmark = pytest.mark.slow  # each test talks to a server process that takes seconds to start

BAD_REQUESTS = ROOT / "tests" / "serve" / "bad_requests.jsonl"


def same_answer(served: dict[str, Any], printed: dict[str, Any]) -> None:
    """Equal entries, routing weights to the 4 decimals `mtkit predict` rounds to (a different padding width may move
    the last one)."""
    assert served.keys() == printed.keys() and served["input"] == printed["input"]
    assert served.get("detected_task") == printed.get("detected_task")
    assert served["predictions"].keys() == printed["predictions"].keys()
    for task, entry in printed["predictions"].items():
        assert served["predictions"][task]["prediction"] == entry["prediction"], task
        for adapter, weight in entry.get("routing", {}).items():
            assert served["predictions"][task]["routing"][adapter] == pytest.approx(weight, abs=2e-4), (task, adapter)


def test_serve_predict_batches_concurrent_requests_and_answers_as_mtkit_predict(classify_server: Server, classify_run: Path) -> None:
    texts = ["a gripping, funny and humane film", "Shares rose sharply after the bank reported record profits.", "the plot never gets going", "ok"]
    printed = mtkit_predict_json(classify_run, *texts)
    assert all("routing" in e for item in printed for e in item["predictions"].values())  # a learned run: routing shown
    requests = [{"inputs": texts[:2]}, {"inputs": texts[2], "task": "topic"}, {"inputs": [texts[3]], "task": "sentiment"}]
    batches_before = classify_server.metric("mtkit_batch_size_count")
    with ThreadPoolExecutor(3) as pool:  # within the server's 300 ms window: one batch of three requests, mixed tasks
        answers = list(pool.map(lambda body: httpx.post(f"{classify_server.url}/predict", json=body, timeout=60), requests))
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    first, second, third = (a.json() for a in answers)
    assert len(first) == 2 and len(second) == 1 and len(third) == 1
    same_answer(first[0], printed[0])
    same_answer(first[1], printed[1])
    # one task asked for: that task's entry only, and no detected task (as `mtkit predict --task` prints)
    same_answer(second[0], {"input": texts[2], "predictions": {"topic": printed[2]["predictions"]["topic"]}})
    same_answer(third[0], {"input": texts[3], "predictions": {"sentiment": printed[3]["predictions"]["sentiment"]}})
    assert classify_server.metric("mtkit_batch_size_count") == batches_before + 1
    metrics = httpx.get(f"{classify_server.url}/metrics").text
    assert 'mtkit_requests_total{endpoint="/predict",status="200"}' in metrics
    assert 'mtkit_request_latency_seconds{endpoint="/predict",quantile="0.99"}' in metrics
    health = httpx.get(f"{classify_server.url}/health").json()
    assert health["status"] == "ok" and health["tasks"] == ["sentiment", "topic"] and health["routing"] == "learned"


def test_serve_answers_each_bad_request_4xx_naming_the_field_and_stays_healthy(classify_server: Server, lm_server: Server) -> None:
    cases = [json.loads(line) for line in BAD_REQUESTS.read_text().splitlines()]
    assert len(cases) >= 30
    servers = {"classify": classify_server, "lm": lm_server}
    for case in cases:
        if "json" in case:
            body = (json.dumps(case["json"]) + " " * case.get("pad_bytes", 0)).encode()
        else:
            body = case.get("body", "").encode(case.get("encoding", "utf-8"))
        url = servers[case["server"]].url + case["path"]
        response = httpx.request(case["method"], url, content=body if case["method"] != "GET" else None, headers={"content-type": "application/json"}, timeout=30)
        where = f"{case['method']} {case['path']} {body[:80]!r}"
        assert response.status_code == case["status"], (where, response.text)
        error = response.json()["error"]
        assert error["message"] and "Traceback" not in error["message"], where
        assert error["param"] == case["param"], (where, error)
        if case["param"] is not None:
            assert error["message"].startswith(case["param"].split("[")[0]) or case["param"] == "body", (where, error)
    for server in servers.values():
        assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
        assert server.metric('mtkit_requests_total{endpoint="/predict",status="500"}') == 0
    good = httpx.post(f"{classify_server.url}/predict", json={"inputs": "still answering"}, timeout=60)
    assert good.status_code == 200 and good.json()[0]["input"] == "still answering"


def test_serve_openai_client_completions_equal_mtkit_predict(lm_server: Server, lm_run: Path) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{lm_server.url}/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == ["auto", "headline", "extra"]
    prompts = ["Shares in the carmaker fell sharply after a profit warning.", "The band will tour Europe next spring."]
    printed = mtkit_predict_json(lm_run, *prompts, "--task", "headline")  # the run routes learned: what `auto` means
    completion = client.completions.create(model="auto", prompt=prompts)
    assert [c.text for c in completion.choices] == [p["predictions"]["headline"]["prediction"] for p in printed]
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    routing = completion.choices[0].model_extra["mtkit"]["routing"]  # which adapters the router chose for this prompt
    assert routing == pytest.approx(printed[0]["predictions"]["headline"]["routing"], abs=2e-4)
    chat = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": prompts[1]}])
    assert chat.choices[0].message.content == printed[1]["predictions"]["headline"]["prediction"]
    short = client.completions.create(model="auto", prompt=prompts[0], max_tokens=1)
    assert short.usage.completion_tokens <= 1 and short.choices[0].finish_reason in {"length", "stop"}
    with pytest.raises(openai.NotFoundError, match="models: auto, headline, extra"):
        client.completions.create(model="gpt-4", prompt="x")


def test_serve_model_by_task_or_adapter_routes_to_that_adapter(lm_server: Server, lm_run: Path) -> None:
    """`model` = the task: its own LoRA (oracle routing); = an adapter: that LoRA; checked against the loaded run."""
    from mtkit.rundir.load import load_run, predict_loaded

    prompt = "Shares in the carmaker fell sharply after a profit warning."
    loaded = load_run(lm_run)
    own = predict_loaded(loaded, [prompt], ["headline"], routing="oracle")[0]["predictions"]["headline"]["prediction"]
    loaded.model.combiners["oracle"].route_tasks({"headline": "extra"})
    extra = predict_loaded(loaded, [prompt], ["headline"], routing="oracle")[0]["predictions"]["headline"]["prediction"]
    for model, expected in (("headline", own), ("extra", extra), ("headline", own)):  # the adapter override does not stick
        answer = httpx.post(f"{lm_server.url}/v1/completions", json={"model": model, "prompt": prompt}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["text"] == expected, model


def test_serve_client_disconnect_leaves_the_others_answered(classify_server: Server) -> None:
    body = json.dumps({"inputs": ["left before its answer"]}).encode()
    host, port = classify_server.url.removeprefix("http://").split(":")
    dropped_before = classify_server.metric('mtkit_dropped_total{reason="disconnected"}')
    with ThreadPoolExecutor(2) as pool:
        other = pool.submit(lambda: httpx.post(f"{classify_server.url}/predict", json={"inputs": ["a patient client"]}, timeout=60))
        with socket.create_connection((host, int(port))) as raw:  # sends its request, then hangs up inside the 300 ms window
            raw.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            time.sleep(0.05)
        answer = other.result()
    assert answer.status_code == 200 and answer.json()[0]["input"] == "a patient client"
    deadline = time.monotonic() + 10
    while classify_server.metric('mtkit_dropped_total{reason="disconnected"}') == dropped_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert classify_server.metric('mtkit_dropped_total{reason="disconnected"}') == dropped_before + 1
    assert httpx.get(f"{classify_server.url}/health").status_code == 200


def test_serve_full_queue_answers_503_with_retry_after_and_slow_batches_504(classify_run: Path) -> None:
    server = start_server(classify_run, "--max-batch-size", "1", "--max-wait-ms", "0", "--queue-size", "1", "--timeout", "20")
    try:
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda i: httpx.post(f"{server.url}/predict", json={"inputs": [f"input {i}"] * 4}, timeout=60), range(12)))
        codes = sorted(a.status_code for a in answers)
        assert set(codes) == {200, 503}, codes
        refused = next(a for a in answers if a.status_code == 503)
        assert refused.headers["retry-after"] == "1" and "queue is full" in refused.json()["error"]["message"]
        assert server.metric('mtkit_dropped_total{reason="queue_full"}') == codes.count(503)
    finally:
        server.stop()
    slow = start_server(classify_run, "--max-wait-ms", "2000", "--timeout", "0.2")
    try:
        answer = httpx.post(f"{slow.url}/predict", json={"inputs": "waits for its batch longer than the timeout"}, timeout=60)
        assert answer.status_code == 504 and "timeout of 0.2 s" in answer.json()["error"]["message"]
    finally:
        slow.stop()


def test_serve_sigterm_answers_requests_in_flight_then_exits(classify_run: Path) -> None:
    server = start_server(classify_run, "--max-wait-ms", "1500")
    answers: list[Any] = []

    def ask(i: int) -> None:
        answers.append(httpx.post(f"{server.url}/predict", json={"inputs": f"in flight {i}"}, timeout=60))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # the three wait in the 1.5 s batching window
    assert server.process.poll() is None
    server.stop()  # SIGTERM, exit code 0
    for thread in threads:
        thread.join()
    assert sorted(a.json()[0]["input"] for a in answers) == ["in flight 0", "in flight 1", "in flight 2"]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/health", timeout=2)


def test_serve_cli_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mtkit.cli.app import app

    missing = CliRunner().invoke(app, ["serve", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "nope" in missing.output and "Traceback" not in missing.output, missing.output
    bad = CliRunner().invoke(app, ["serve", str(tmp_path), "--max-batch-size", "0"])
    assert bad.exit_code == 2 and "--max-batch-size 0: must be at least 1" in bad.output, bad.output
    threads = CliRunner().invoke(app, ["serve", str(tmp_path), "--threads", "0"])
    assert threads.exit_code == 2 and "--threads 0: must be at least 1" in threads.output, threads.output


def test_serve_checks_the_manifest_before_serving(classify_run: Path, tmp_path: Path) -> None:
    import shutil

    from typer.testing import CliRunner

    from mtkit.cli.app import app

    damaged = shutil.copytree(classify_run, tmp_path / "run")
    with (damaged / "model.safetensors").open("ab") as file:
        file.write(b"\0")
    result = CliRunner().invoke(app, ["serve", str(damaged)])
    assert result.exit_code == 2 and "model.safetensors" in result.output and "Traceback" not in result.output, result.output


def test_serve_without_fastapi_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    from typer.testing import CliRunner

    from mtkit.cli.app import app

    monkeypatch.setitem(sys.modules, "fastapi", None)  # what an environment without the extra imports
    result = CliRunner().invoke(app, ["serve", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "pip install 'mtkit[serve]'" in result.output and "Traceback" not in result.output
