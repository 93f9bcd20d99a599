"""The FastAPI app: `/predict`, the OpenAI-compatible completions, `/v1/models`, `/health` and `/metrics`.

Every answer that is not a success is a JSON object `{"error": {"message", "type", "param", "code"}}` (the shape
OpenAI clients read), with a 4xx status for a request at fault; a failure inside the server is a 500 with a
one-line message, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mtkit.serve.batching import Batcher, Job, QueueFull
from mtkit.serve.metrics import Metrics
from mtkit.serve.requests import BadRequest, ChatRequest, CompletionRequest, PredictRequest, parse_body, texts_of
from mtkit.serve.service import ServeSettings, Service

__all__ = ["create_app"]

log = logging.getLogger("mtkit.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def error_response(status: int, message: str, field: str | None = None, code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": field, "code": code}}, status_code=status, headers=headers)


def create_app(service: Service, settings: ServeSettings) -> FastAPI:
    """The HTTP app around a loaded run; its batching loop starts with the app (or with the first request)."""
    metrics = Metrics()
    batcher = Batcher(service.run_batch, max_batch_size=settings.max_batch_size, max_wait_ms=settings.max_wait_ms, queue_size=settings.queue_size, metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        batcher.start()
        yield
        await batcher.stop()  # uvicorn has answered every request in flight by now (graceful shutdown)

    app = FastAPI(title="mtkit serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(_Guard, metrics=metrics, max_body_bytes=settings.max_body_bytes)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.field, exc.code, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"no endpoint {request.url.path!r} (endpoints: GET /health, GET /metrics, GET /v1/models, POST /predict, POST /v1/completions, POST /v1/chat/completions)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path!r} (allowed: {exc.headers.get('Allow', '') if exc.headers else ''})"
        else:
            message = str(exc.detail)
        return error_response(exc.status_code, message, headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("error answering %s %s", request.method, request.url.path)
        return error_response(500, f"the server failed to answer: {type(exc).__name__}: {exc}")

    async def answer(request: Request, job: Job) -> list[Any]:
        """Queue a job and wait for its batch; the job is dropped if the client leaves or the time runs out."""
        if batcher._task is None:  # an app mounted without its lifespan (Ray Serve may do so)
            batcher.start()
        try:
            batcher.submit(job)
        except QueueFull:
            metrics.event("queue_full")
            raise BadRequest(503, f"the server's queue is full ({settings.queue_size} requests); retry shortly", code="queue_full", headers={"Retry-After": "1"}) from None
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait({job.future, gone}, timeout=settings.timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if job.future in done:
            return job.future.result()
        job.future.cancel()
        if gone in done:
            metrics.event("disconnected")
            raise BadRequest(499, "the client closed the connection")  # nobody reads it
        metrics.event("timed_out")
        raise BadRequest(504, f"the request was not answered within this server's timeout of {settings.timeout_s:g} s; retry, or send fewer inputs", code="timeout")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "run": str(service.loaded.run_dir.path), "tasks": service.tasks, "adapters": service.adapters, "routing": service.routing, "queue": batcher.queue.qsize()}

    @app.get("/metrics")
    async def metrics_text() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        body = parse_body(await request.body(), PredictRequest)
        texts = texts_of(body.inputs, "inputs", settings)
        if body.task is not None and body.task not in service.tasks:
            raise BadRequest(400, f"task: {body.task!r} is not a task of this run (tasks: {', '.join(service.tasks)})", "task")
        return JSONResponse(await answer(request, Job(texts, [body.task] * len(texts))))

    def generation_job(model: str, max_tokens: int | None, texts: list[str]) -> Job:
        if not service.generative:
            raise BadRequest(404, f"model: this run has no text-generating task (tasks: {', '.join(service.tasks)}); use POST /predict", "model", "model_not_found")
        if max_tokens is not None and max_tokens > settings.max_tokens:
            raise BadRequest(400, f"max_tokens: {max_tokens} is more than this server's limit of {settings.max_tokens}", "max_tokens")
        try:
            key = service.generation(model, max_tokens)
        except LookupError:
            raise BadRequest(404, f"model: {model!r} is not served here (models: {', '.join(service.model_names)})", "model", "model_not_found") from None
        return Job(texts, [key.task] * len(texts), key)

    def choice_facts(job: Job, entry: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        """The generated text, why it stopped, and mtkit's routing facts for one answer."""
        key = job.key
        predicted = entry["predictions"][key.task]  # type: ignore[union-attr]
        text = predicted["prediction"]
        budget = key.max_tokens or service.max_new_tokens(key.task)  # type: ignore[union-attr]
        finish = "length" if service.count_tokens(text) >= budget else "stop"
        facts = {k: v for k, v in predicted.items() if k != "prediction"}
        return text, finish, facts

    def usage(prompts: list[str], outputs: list[str]) -> dict[str, int]:
        prompt = sum(service.count_tokens(p) for p in prompts)
        completion = sum(service.count_tokens(o) for o in outputs)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    @app.post("/v1/completions")
    async def completions(request: Request) -> JSONResponse:
        body = parse_body(await request.body(), CompletionRequest)
        texts = texts_of(body.prompt, "prompt", settings)
        job = generation_job(body.model, body.max_tokens, texts)
        entries = await answer(request, job)
        choices, outputs = [], []
        for i, entry in enumerate(entries):
            text, finish, facts = choice_facts(job, entry)
            outputs.append(text)
            choices.append({"index": i, "text": text, "finish_reason": finish, "logprobs": None, "mtkit": facts})
        return JSONResponse({
            "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()), "model": body.model,
            "choices": choices, "usage": usage(texts, outputs),
        })

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> JSONResponse:
        body = parse_body(await request.body(), ChatRequest)
        texts = texts_of(body.messages[0].content, "messages[0].content", settings)
        job = generation_job(body.model, body.max_tokens, texts)
        (entry,) = await answer(request, job)
        text, finish, facts = choice_facts(job, entry)
        return JSONResponse({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()), "model": body.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": None, "mtkit": facts}],
            "usage": usage(texts, [text]),
        })

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "mtkit"} for name in service.model_names]}

    return app


async def _disconnected(request: Request) -> None:
    """Returns once the client has closed its connection (the body was read already, so only that can arrive)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class _Guard:
    """ASGI middleware: refuses bodies over the size limit before they are read whole, and counts every answer."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.monotonic(), [500]
        endpoint = scope["path"] if scope["path"] in _ENDPOINTS else "other"

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            body = await self._bounded_body(scope, receive)
            if body is None:
                too_big = error_response(413, f"the request body is larger than this server's limit of {self.max_body_bytes} bytes", "body")
                await too_big(scope, receive, sending)
                return
            replayed = [False]

            async def replay() -> Message:
                if not replayed[0]:
                    replayed[0] = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, sending)
        except _ClientGone:
            status[0] = 499
            self.metrics.event("disconnected")
        finally:
            self.metrics.request(endpoint, status[0], time.monotonic() - start)

    async def _bounded_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None when it is (or says it is) over the limit."""
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _ClientGone(Exception):
    """The client closed its connection while sending its request."""


_ENDPOINTS = {"/predict", "/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics"}
