"""The chat-completions body as a pydantic model: types, ranges, and every field this server knows.

A field outside the model is refused (400 `unknown_parameter`): nothing a client sends is dropped silently. OpenAI
fields the server cannot honour are known but accepted only at their no-op values (`UNSUPPORTED`; else 400
`unsupported_parameter`). Accepted whatever their value, because they never change an answer: `audio.voice` (the
model has one voice), `user`, `metadata`, `service_tier`, `parallel_tool_calls` (no tools), and a message's `name`
and `refusal` (protocol.py). `parse_body` turns pydantic's errors into OpenAI's error shape with a `param` path
("audio.format", "messages[0].content").
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vita_audio.serve.errors import APIError, bad_request

_STRICT = ConfigDict(extra="forbid", strict=True)


class AudioOptions(BaseModel):
    model_config = _STRICT
    format: Literal["wav", "pcm16"] | None = None
    voice: str | dict | None = None  # ignored: the model has one voice


class StreamOptions(BaseModel):
    model_config = _STRICT
    include_usage: bool = False


class ChatBody(BaseModel):
    """A `/v1/chat/completions` body. `messages` is a list of dicts here; `protocol.py` validates each part."""

    model_config = _STRICT
    model: str | None = None
    messages: list[Any]
    stream: bool = False
    stream_options: StreamOptions | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    audio: AudioOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    repetition_penalty: float | None = Field(None, gt=0)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    stop: str | list[str] | None = None
    mode: str | None = None  # vita: vanilla | balance | boost | turbo | verified
    schedule: list[int] | None = None  # vita: [a1, b1, ...]
    drafting: str | None = None  # vita: audio (MCTP steps inside audio spans only) | all (the reference's)
    # OpenAI fields accepted only at their no-op values (see UNSUPPORTED)
    n: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    tool_choice: str | dict | None = None
    functions: list[Any] | None = None
    function_call: str | dict | None = None
    response_format: dict | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict | None = None
    store: bool | None = None
    prediction: dict | None = None
    reasoning_effort: str | None = None
    web_search_options: dict | None = None
    # accepted and ignored whatever their value (see the module docstring)
    user: str | None = None
    metadata: dict | None = None
    service_tier: str | None = None
    parallel_tool_calls: bool | None = None


# field -> (is the value a no-op?, why the server refuses anything else)
UNSUPPORTED: dict[str, tuple[Any, str]] = {
    "n": (lambda v: v in (None, 1), "this server answers with one choice: n must be 1"),
    "logprobs": (lambda v: not v, "this server does not return log probabilities"),
    "top_logprobs": (lambda v: not v, "this server does not return log probabilities"),
    "tools": (lambda v: not v, "this server does not call tools"),
    "tool_choice": (lambda v: v in (None, "none"), "this server does not call tools"),
    "functions": (lambda v: not v, "this server does not call functions"),
    "function_call": (lambda v: v in (None, "none"), "this server does not call functions"),
    "response_format": (lambda v: v in (None, {"type": "text"}), "this server answers in plain text only"),
    "presence_penalty": (lambda v: not v, "this server implements repetition_penalty, not presence_penalty"),
    "frequency_penalty": (lambda v: not v, "this server implements repetition_penalty, not frequency_penalty"),
    "logit_bias": (lambda v: not v, "this server does not implement logit_bias"),
    "store": (lambda v: not v, "this server does not store completions"),
    "prediction": (lambda v: v is None, "this server does not implement predicted outputs"),
    "reasoning_effort": (lambda v: v is None, "this model is not a reasoning model"),
    "web_search_options": (lambda v: v is None, "this server does not search the web"),
}
MAX_STOPS = 4  # as OpenAI


def parse_body(raw: bytes) -> ChatBody:
    """JSON bytes -> a validated `ChatBody`; a 400 `APIError` naming the field otherwise."""
    try:
        body = ChatBody.model_validate_json(raw)
    except ValidationError as err:
        raise _to_api_error(err) from None
    for name, (ok, why) in UNSUPPORTED.items():
        if not ok(getattr(body, name)):
            raise bad_request(f"{name}={getattr(body, name)!r} is not supported: {why}", name,
                              "unsupported_parameter")
    stops = [body.stop] if isinstance(body.stop, str) else (body.stop or [])
    if len(stops) > MAX_STOPS or not all(stops):
        raise bad_request(f"stop must be a non-empty string or a list of at most {MAX_STOPS} non-empty strings, "
                          f"got {body.stop!r}", "stop")
    return body


def _to_api_error(err: ValidationError) -> APIError:
    e = err.errors(include_url=False)[0]
    param = _param(e["loc"])
    if e["type"] == "json_invalid":
        return bad_request(f"the request body is not valid JSON ({e['msg']})", None, "invalid_json")
    if e["type"] == "model_type" and not e["loc"]:
        return bad_request("the request body must be a JSON object")
    if e["type"] == "extra_forbidden":
        return bad_request(f"unknown field {param!r}: this server does not implement it (the README lists the "
                           "fields it accepts)", param, "unknown_parameter")
    if e["type"] == "missing":
        return bad_request(f"{param} is required", param)
    return bad_request(f"{param}: {e['msg']}, got {e.get('input')!r}", param)


def _param(loc: tuple) -> str | None:
    """('messages', 0, 'content') -> 'messages[0].content'; pydantic's union branch names are dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "list[str]", "dict[any,any]", "list[any]") or "[" in str(part):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or None
