"""The FastAPI app: `/v1/chat/completions` (JSON or SSE), `/v1/models`, `/health` and the web page at `/`.

    POST body -> size limit (413) -> JSON (400) -> parse_request (400/404) -> audio -> codes (threadpool)
         -> prompt ids (400 when too long) -> Engine.submit (503 when full) -> events -> SSE chunks | one JSON

Every error is OpenAI's `{"error": {"message", "type", "param", "code"}}`; mid-stream as one `data:` event.
A client that disconnects cancels its generation (the engine drops the row and its slot at once).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections import OrderedDict
from contextlib import asynccontextmanager
from pathlib import Path

import torch
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from vita_audio.inference import AudioChunk, SpeechLM, TextDelta, default_schedule, resolve_schedule
from vita_audio.serve.audio import b64, decode_input_audio, pcm16_bytes, wav_bytes
from vita_audio.serve.engine import Done, Engine, Job, Overloaded
from vita_audio.serve.errors import APIError, bad_request
from vita_audio.serve.protocol import ChatRequest, parse_request
from vita_audio.serve.settings import ServeSettings

STATIC = Path(__file__).parent / "static"
TRANSCRIPTS_KEPT = 1024  # spoken answers whose transcript a later turn may refer to by audio id


def create_app(speech: SpeechLM, settings: ServeSettings | None = None, engine: Engine | None = None) -> FastAPI:
    """The server of one `SpeechLM` (its tokenizer for audio in, its detokenizer for audio out)."""
    settings = settings or ServeSettings()
    lm = speech.lm
    engine = engine or Engine(lm, speech.detokenizer, settings.slots, settings.max_queue, settings.max_batch,
                              settings.batch_window_s, settings.codec_threads)
    transcripts: OrderedDict[str, str] = OrderedDict()
    n_pos = getattr(lm.backbone.config, "max_position_embeddings", None)
    sample_rate = speech.detokenizer.sample_rate if speech.detokenizer is not None else None

    @asynccontextmanager
    async def lifespan(_app):
        engine.start()
        try:
            yield
        finally:
            engine.stop()

    app = FastAPI(title="vita-audio", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engine, app.state.settings = engine, settings

    @app.exception_handler(APIError)
    async def _api_error(_req, err: APIError):
        return err.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req, err: StarletteHTTPException):
        kind = {404: "not_found_error", 405: "invalid_request_error"}.get(err.status_code, "invalid_request_error")
        return APIError(err.status_code, str(err.detail), kind).response()

    @app.exception_handler(Exception)
    async def _server_error(_req, err: Exception):
        return APIError(500, f"internal error: {type(err).__name__}: {err}", "server_error").response()

    def authorize(request: Request) -> None:
        if settings.api_key is None:
            return
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
            raise APIError(401, "missing or wrong API key: send Authorization: Bearer <key>",
                           "authentication_error", None, "invalid_api_key")

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": settings.model_name, "sample_rate": sample_rate,
                "auth": settings.api_key is not None, **engine.stats()}

    @app.get("/v1/models")
    async def models(request: Request):
        authorize(request)
        return {"object": "list", "data": [_model_card(settings.model_name)]}

    @app.get("/v1/models/{name}")
    async def model(name: str, request: Request):
        authorize(request)
        if name != settings.model_name:
            raise APIError(404, f"the model {name!r} does not exist", "invalid_request_error", "model",
                           "model_not_found")
        return _model_card(name)

    @app.get("/")
    async def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def schedule_of(req: ChatRequest) -> tuple[list[int], bool]:
        mode = req.mode or settings.mode
        verify = req.schedule is None and mode == "verified"
        sched = req.schedule if req.schedule is not None else (None if mode in (None, "verified") else mode)
        sched = default_schedule(lm) if sched is None else sched
        try:
            if verify and lm.num_mctp_modules == 0:
                raise ValueError("mode 'verified' needs MCTP modules to draft with; this model has none")
            return resolve_schedule(sched, None if verify else lm.num_mctp_modules), verify
        except ValueError as err:
            raise bad_request(str(err), "schedule" if req.schedule is not None else "mode", "invalid_mode") from None

    def prompt_of(req: ChatRequest) -> tuple[list[int], torch.Tensor | None]:
        """(prompt ids, audio_features): a Plus model's input audio is its encoder's frames, else audio codes."""
        audios = []
        for part in req.audio:
            if speech.tokenizer is None and not speech.is_plus:
                raise bad_request("this server has no audio tokenizer: send text only", part.param)
            sr = speech.input_sample_rate
            wav = decode_input_audio(part.data, part.format, sr, settings.max_audio_seconds, part.param)
            try:  # codes of the audio tokenizer, or a Plus model's encoder frames
                audios.append(speech.encode_audio((wav, sr)))
            except ValueError as err:  # e.g. too short to give one audio token
                raise bad_request(str(err), f"{part.param}.data", "invalid_audio") from None
        features = torch.cat(audios) if speech.is_plus and audios else None
        return speech.prompts.generation_prompt(req.turns, audios), features

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        authorize(request)
        raw = await _read_body(request, settings.max_body_bytes)
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise bad_request(f"the request body is not valid JSON ({err})", None, "invalid_json") from None
        req = parse_request(body, settings, transcripts)
        schedule, verify = schedule_of(req)
        if req.audio_out and speech.detokenizer is None:
            raise bad_request("this server has no audio detokenizer: ask for modalities [\"text\"]", "modalities")
        try:
            engine.expect()  # a place in the slots or the queue, before the audio is encoded
        except Overloaded as err:
            raise APIError(503, str(err), "server_error", None, "server_overloaded", {"Retry-After": "1"}) from None
        try:
            prompt, features = await run_in_threadpool(prompt_of, req)
            if n_pos is not None and len(prompt) + req.max_tokens > n_pos:
                raise bad_request(f"the conversation is {len(prompt)} tokens and max_tokens is {req.max_tokens}: "
                                  f"together over the model's {n_pos} positions; shorten it or lower max_tokens",
                                  "messages", "context_length_exceeded")
        except BaseException:
            engine.forget()
            raise
        loop, events = asyncio.get_running_loop(), asyncio.Queue()
        job = Job(prompt, lambda ev: loop.call_soon_threadsafe(events.put_nowait, ev), schedule, verify,
                  req.sampling, settings.stop_ids, req.max_tokens, req.audio_out, features)
        engine.submit(job, reserved=True)
        meta = _Meta(settings.model_name, len(prompt), req.mode or settings.mode or "default", schedule)
        if req.stream:
            return StreamingResponse(_sse(job, events, engine, req, meta, transcripts), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return await _collect(request, job, events, engine, req, meta, transcripts)

    return app


class _Meta:
    def __init__(self, model: str, prompt_tokens: int, mode: str, schedule: list[int]) -> None:
        self.id, self.audio_id = f"chatcmpl-{uuid.uuid4().hex[:24]}", f"audio_{uuid.uuid4().hex[:24]}"
        self.created, self.model, self.prompt_tokens = int(time.time()), model, prompt_tokens
        self.mode, self.schedule = mode, schedule

    def usage(self, done: Done) -> dict:
        n = len(done.tokens)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": n, "total_tokens": self.prompt_tokens + n}

    def stats(self, done: Done) -> dict:
        return {"mode": self.mode, "schedule": self.schedule, "first_audio_s": done.first_audio_s,
                "first_audio_forwards": done.first_audio_forwards,
                "queued_s": done.queued_s, "elapsed_s": done.elapsed_s, "backbone_forwards": done.backbone_forwards,
                "mctp_steps": done.mctp_steps, "batch": done.batch, "sample_rate": done.sample_rate}

    def chunk(self, delta: dict, finish: str | None = None, **extra) -> str:
        body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body)}\n\n"


def _remember(transcripts: OrderedDict, audio_id: str, text: str) -> None:
    transcripts[audio_id] = text
    while len(transcripts) > TRANSCRIPTS_KEPT:
        transcripts.popitem(last=False)


def _engine_error(err: Exception) -> APIError:
    if isinstance(err, ValueError):
        return bad_request(str(err))
    return APIError(500, f"generation failed: {type(err).__name__}: {err}", "server_error")


async def _sse(job: Job, events: asyncio.Queue, engine: Engine, req: ChatRequest, meta: _Meta, transcripts):
    """Server-sent events: a role chunk, then one chunk per text delta / audio chunk as the engine yields them."""
    try:
        yield meta.chunk({"role": "assistant", "content": None if req.audio_out else ""})
        while True:
            ev = await events.get()
            if isinstance(ev, TextDelta):
                delta = ({"audio": {"id": meta.audio_id, "transcript": ev.text}} if req.audio_out
                         else {"content": ev.text})
                yield meta.chunk(delta)
            elif isinstance(ev, AudioChunk):
                yield meta.chunk({"audio": {"id": meta.audio_id, "data": b64(pcm16_bytes(ev.wav))}})
            elif isinstance(ev, Done):
                if req.audio_out:
                    _remember(transcripts, meta.audio_id, ev.text)
                    tail = {"audio": {"id": meta.audio_id, "expires_at": int(time.time()) + 3600}}
                else:
                    tail = {}
                yield meta.chunk(tail, ev.finish_reason, vita=meta.stats(ev))
                if req.include_usage:
                    body = {"id": meta.id, "object": "chat.completion.chunk", "created": meta.created,
                            "model": meta.model, "choices": [], "usage": meta.usage(ev)}
                    yield f"data: {json.dumps(body)}\n\n"
                yield "data: [DONE]\n\n"
                return
            else:
                yield f"data: {json.dumps(_engine_error(ev).body())}\n\n"
                return
    finally:  # normal end, error, or the client went away (the response task is cancelled): free the slot
        engine.cancel(job)


async def _collect(request: Request, job: Job, events: asyncio.Queue, engine: Engine, req: ChatRequest,
                   meta: _Meta, transcripts) -> JSONResponse:
    """A non-streamed answer: wait for `Done`, cancelling the job if the client disconnects meanwhile."""
    try:
        while True:
            try:
                ev = await asyncio.wait_for(events.get(), timeout=0.5)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    raise APIError(499, "client closed the request", "invalid_request_error") from None
                continue
            if isinstance(ev, Done):
                break
            if isinstance(ev, Exception):
                raise _engine_error(ev)
    finally:
        engine.cancel(job)
    message: dict = {"role": "assistant", "content": ev.text, "refusal": None}
    if req.audio_out:
        wav = ev.wav if ev.wav is not None else torch.zeros(0)
        data = wav_bytes(wav, ev.sample_rate) if req.audio_format == "wav" else pcm16_bytes(wav)
        message["content"] = None
        message["audio"] = {"id": meta.audio_id, "data": b64(data), "expires_at": int(time.time()) + 3600,
                            "transcript": ev.text}
        _remember(transcripts, meta.audio_id, ev.text)
    body = {"id": meta.id, "object": "chat.completion", "created": meta.created, "model": meta.model,
            "choices": [{"index": 0, "message": message, "finish_reason": ev.finish_reason, "logprobs": None}],
            "usage": meta.usage(ev), "vita": meta.stats(ev)}
    return JSONResponse(body)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` bytes (Content-Length or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body of {int(declared)} bytes is over this server's limit of {limit} bytes",
                       "invalid_request_error", None, "request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"request body is over this server's limit of {limit} bytes",
                           "invalid_request_error", None, "request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _model_card(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "vita-audio"}
