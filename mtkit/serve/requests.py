"""Request bodies: parsed and checked here, so that every bad request gets a 4xx naming the field at fault."""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from mtkit.serve.service import ServeSettings

_T = TypeVar("_T", bound="BaseModel")

__all__ = ["BadRequest", "ChatRequest", "CompletionRequest", "PredictRequest", "parse_body", "texts_of"]


class BadRequest(Exception):
    """A request the server refuses: status, the field at fault (None: the body as a whole) and a message."""

    def __init__(self, status: int, message: str, field: str | None = None, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.code, self.headers = status, message, field, code, headers


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(_Body):
    """`POST /predict`."""

    inputs: Any = Field(description="One input text, or a list of them.")
    task: StrictStr | None = Field(None, description="The task whose head predicts (default: every task's).")


class CompletionRequest(_Body):
    """`POST /v1/completions` (the OpenAI fields mtkit honours; others are refused, not ignored)."""

    model: StrictStr = Field(description="A text-generating task, an adapter, or `auto`.")
    prompt: Any = Field(description="One prompt, or a list of them.")
    max_tokens: StrictInt | None = Field(None, ge=1, description="At most this many new tokens (default: the task head's max_new_tokens).")
    temperature: float | None = Field(None, ge=0, le=0, description="Only 0 (greedy decoding, as the run's head decodes) or absent.")
    n: StrictInt = Field(1, ge=1, le=1, description="Completions per prompt: only 1.")
    stream: Literal[False] = Field(False, description="Streaming is not offered: only false.")
    user: StrictStr | None = Field(None, description="The caller's own id; not used.")


class _Message(_Body):
    role: Literal["user"] = Field(description="Only `user`: one message, rendered by the task head's prompt template.")
    content: StrictStr = Field(description="The message text.")


class ChatRequest(_Body):
    """`POST /v1/chat/completions`: one user message (the task head's template renders the prompt)."""

    model: StrictStr
    messages: list[_Message] = Field(min_length=1, max_length=1)
    max_tokens: StrictInt | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=0)
    n: StrictInt = Field(1, ge=1, le=1)
    stream: Literal[False] = Field(False)
    user: StrictStr | None = None


def parse_body(raw: bytes, model: type[_T]) -> _T:
    """The body as `model`, or a BadRequest naming what is wrong with it."""
    if not raw.strip():
        raise BadRequest(400, "the request body is empty; send a JSON object")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise BadRequest(400, "the request body is not UTF-8 text; send a UTF-8 JSON object") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(400, f"the request body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(data, dict):
        raise BadRequest(400, f"the request body is a JSON {type(data).__name__}, not an object; send an object such as {{\"inputs\": [...]}}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = _field(error["loc"])
        if error["type"] == "extra_forbidden":
            known = ", ".join(sorted(model.model_fields))
            raise BadRequest(400, f"{field}: not a field of this request (fields: {known})", field) from None
        if error["type"] == "missing":
            raise BadRequest(400, f"{field}: required but missing", field) from None
        message = error["msg"][0].lower() + error["msg"][1:]
        raise BadRequest(400, f"{field}: {message} (got {_shown(error.get('input'))})", field) from None


def texts_of(value: Any, field: str, settings: ServeSettings) -> list[str]:
    """A request's input text(s) as a list, checked against the server's limits."""
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list):
        raise BadRequest(400, f"{field}: must be a string or a list of strings (got {type(value).__name__})", field)
    if not texts:
        raise BadRequest(400, f"{field}: the list is empty; send at least one input", field)
    if len(texts) > settings.max_inputs:
        raise BadRequest(413, f"{field}: {len(texts)} inputs, more than this server's limit of {settings.max_inputs} per request; split the request", field)
    for i, text in enumerate(texts):
        where = field if isinstance(value, str) else f"{field}[{i}]"
        if not isinstance(text, str):
            raise BadRequest(400, f"{where}: must be a string (got {type(text).__name__})", where)
        if not text.strip():
            raise BadRequest(400, f"{where}: is empty; send some text", where)
        if len(text) > settings.max_input_chars:
            raise BadRequest(413, f"{where}: {len(text)} characters, more than this server's limit of {settings.max_input_chars}", where)
    return texts


def _field(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, BaseModel) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
