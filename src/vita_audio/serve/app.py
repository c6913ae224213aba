"""The FastAPI app: `/v1/chat/completions` (JSON or SSE), `/v1/models`, `/health` and the web page at `/`.

    POST -> key (401) -> admission: a slot or queue place (503), before anything is read
         -> body, read up to max_body_bytes (413 from Content-Length, or once the stream passes it)
         -> on the bounded request pool: JSON + fields (400/404) -> decode options (400) -> audio headers, limits,
            decoding and encoding (400) -> prompt ids (400 when too long)
         -> Engine.submit -> events -> SSE chunks (": keep-alive" comments while idle) | one JSON
         -> a request not answered within request_timeout_s fails (504) and frees its slot

Every error is OpenAI's `{"error": {"message", "type", "param", "code"}}`; mid-stream as one `data:` event. A
failure the client cannot act on is logged with the request id (the completion's id, also in `X-Request-Id`) and
answered with that id only. A client that disconnects cancels its generation.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import torch
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from vita_audio.inference import AudioChunk, SpeechLM, TextDelta, default_schedule
from vita_audio.inference.heads import check_span_drafting
from vita_audio.inference.schedule import Decode, resolve_decode
from vita_audio.serve.audio import AudioLimits, b64, pcm16_bytes, read_input_audio, wav_bytes
from vita_audio.serve.engine import DeadlineExceeded, Done, Engine, EngineDown, Job, Overloaded
from vita_audio.serve.errors import APIError, bad_request, internal_error
from vita_audio.serve.protocol import ChatRequest, Transcripts, parse_request
from vita_audio.serve.settings import ServeSettings

STATIC = Path(__file__).parent / "static"
TRANSCRIPTS_KEPT = 1024  # spoken answers whose transcript a later turn may refer to by audio id
GRACE_S = 5.0  # past a job's deadline, the HTTP side stops waiting for the engine (which should have failed it)
POLL_S = 0.5  # a non-streamed request checks this often whether its client is still there


def create_app(speech: SpeechLM, settings: ServeSettings | None = None, engine: Engine | None = None) -> FastAPI:
    """The server of one `SpeechLM` (its tokenizer for audio in, its detokenizer for audio out)."""
    settings = settings or ServeSettings()
    lm = speech.lm
    engine = engine or Engine(lm, speech.detokenizer, settings.slots, settings.max_queue, settings.max_batch,
                              settings.batch_window_s, settings.codec_threads)
    transcripts = Transcripts(TRANSCRIPTS_KEPT)
    n_pos = getattr(lm.backbone.config, "max_position_embeddings", None)
    sample_rate = speech.detokenizer.sample_rate if speech.detokenizer is not None else None
    limits = AudioLimits(settings.max_audio_seconds, settings.max_sample_rate)
    resolve_decode(settings.mode, None, default_schedule(lm), lm.num_mctp_modules)  # a bad server.mode: ValueError

    @asynccontextmanager
    async def lifespan(app_):
        app_.state.pool = ThreadPoolExecutor(settings.audio_threads, thread_name_prefix="vita-request")
        engine.start()
        try:
            yield
        finally:
            engine.stop()
            app_.state.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="vita-audio", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engine, app.state.settings = engine, settings

    @app.exception_handler(APIError)
    async def _api_error(_req, err: APIError):
        return err.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req, err: StarletteHTTPException):
        kind = {404: "not_found_error"}.get(err.status_code, "invalid_request_error")
        return APIError(err.status_code, str(err.detail), kind).response()

    @app.exception_handler(Exception)
    async def _server_error(req: Request, err: Exception):
        return internal_error(err, getattr(req.state, "request_id", None) or _new_id()).response()

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
        alive = engine.alive()
        body = {"status": "ok" if alive else "error", "engine": "running" if alive else "stopped",
                "model": settings.model_name, "sample_rate": sample_rate, "auth": settings.api_key is not None,
                **engine.stats()}
        if not alive:
            body["message"] = "the generation engine thread is not running: see the server log"
        return JSONResponse(body, status_code=200 if alive else 503)

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

    def decode_of(req: ChatRequest) -> Decode:
        """schedule > mode > server.mode > the checkpoint's schedule (`resolve_decode`); verified takes none."""
        asked = req.mode is not None or req.schedule is not None
        try:
            decode = resolve_decode(req.mode if asked else settings.mode, req.schedule, default_schedule(lm),
                                    lm.num_mctp_modules, req.drafting)
            check_span_drafting(lm, decode.drafting, decode.schedule, decode.verify)  # no audio markers: a 400
            return decode
        except ValueError as err:
            if req.drafting is not None and "drafting" in str(err):
                raise bad_request(str(err), "drafting", "invalid_drafting") from None
            if req.schedule is not None:
                raise bad_request(str(err), "schedule", "invalid_schedule") from None
            raise bad_request(str(err), "mode", "invalid_mode") from None

    def prompt_of(req: ChatRequest) -> tuple[list[int], torch.Tensor | None]:
        """(prompt ids, audio_features): a Plus model's input audio is its encoder's frames, else audio codes."""
        if req.audio and speech.tokenizer is None and not speech.is_plus:
            raise bad_request("this server has no audio tokenizer: send text only", req.audio[0].param)
        sr = speech.input_sample_rate if req.audio else 0
        wavs = read_input_audio([(p.data, p.format, p.param) for p in req.audio], sr, limits)
        audios = []
        for part, wav in zip(req.audio, wavs):
            try:  # codes of the audio tokenizer, or a Plus model's encoder frames
                audios.append(speech.encode_audio((wav, sr)))
            except ValueError as err:  # e.g. too short to give one audio token
                raise bad_request(str(err), f"{part.param}.data", "invalid_audio") from None
        features = torch.cat(audios) if speech.is_plus and audios else None
        return speech.prompts.generation_prompt(req.turns, audios), features

    def prepare(raw: bytes) -> tuple[ChatRequest, Decode, list[int], torch.Tensor | None]:
        """Everything between the body's bytes and a job, on the request pool (never on the event loop)."""
        req = parse_request(raw, settings, transcripts)
        decode = decode_of(req)
        if req.audio_out and speech.detokenizer is None:
            raise bad_request("this server has no audio detokenizer: ask for modalities [\"text\"]", "modalities")
        prompt, features = prompt_of(req)
        if n_pos is not None and len(prompt) + req.max_tokens > n_pos:
            raise bad_request(f"the conversation is {len(prompt)} tokens and max_tokens is {req.max_tokens}: "
                              f"together over the model's {n_pos} positions; shorten it or lower max_tokens",
                              "messages", "context_length_exceeded")
        return req, decode, prompt, features

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        arrived, rid = time.perf_counter(), _new_id()
        request.state.request_id = rid
        authorize(request)
        try:
            engine.expect()  # a place in the slots or the queue, before the body is read
        except Overloaded as err:
            raise APIError(503, str(err), "server_error", None, "server_overloaded", {"Retry-After": "1"}) from None
        except EngineDown as err:
            raise _engine_error(err, rid) from None
        try:
            raw = await _read_body(request, settings.max_body_bytes)
            req, decode, prompt, features = await asyncio.get_running_loop().run_in_executor(
                request.app.state.pool, prepare, raw)
        except BaseException:
            engine.forget()
            raise
        loop, events = asyncio.get_running_loop(), asyncio.Queue()
        job = Job(prompt, lambda ev: loop.call_soon_threadsafe(events.put_nowait, ev), decode.schedule, decode.verify,
                  req.sampling, settings.stop_ids, req.max_tokens, req.audio_out, features, req.stop,
                  arrived + settings.request_timeout_s, drafting=decode.drafting)
        try:
            engine.submit(job, reserved=True)
        except EngineDown as err:
            raise _engine_error(err, rid) from None
        mode = "verified" if decode.verify else "schedule" if req.schedule is not None else req.mode or settings.mode
        meta = _Meta(rid, settings.model_name, len(prompt), mode or "default", decode.schedule)
        if req.stream:
            return StreamingResponse(_sse(job, events, engine, req, meta, transcripts, settings.keepalive_s),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                                              "X-Request-Id": rid})
        return await _collect(request, job, events, engine, req, meta, transcripts)

    return app


def _new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


class _Meta:
    def __init__(self, rid: str, model: str, prompt_tokens: int, mode: str, schedule: list[int]) -> None:
        self.id, self.audio_id = rid, f"audio_{uuid.uuid4().hex[:24]}"
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


def _engine_error(err: BaseException, rid: str) -> APIError:
    if isinstance(err, DeadlineExceeded):
        return APIError(504, str(err), "server_error", None, "request_timeout", {"X-Request-Id": rid})
    if isinstance(err, EngineDown):
        return APIError(503, f"{err} (request id {rid})", "server_error", None, "engine_unavailable")
    if isinstance(err, ValueError):
        return bad_request(str(err))
    return internal_error(err, rid)


async def _events(job: Job, events: asyncio.Queue, tick: float) -> AsyncIterator[object | None]:
    """The job's events up to `Done` or an error; None after every `tick` seconds without one. Should the engine
    not answer by the job's deadline (plus a grace), a `DeadlineExceeded` of our own ends it."""
    while True:
        left = job.deadline + GRACE_S - time.perf_counter()
        try:
            ev = await asyncio.wait_for(events.get(), timeout=max(0.0, min(tick, left)))
        except asyncio.TimeoutError:
            if time.perf_counter() >= job.deadline + GRACE_S:
                yield DeadlineExceeded("the request was not answered within the server's time limit "
                                       "(server.request_timeout_s)")
                return
            yield None
            continue
        yield ev
        if isinstance(ev, (Done, BaseException)):
            return


async def _sse(job: Job, events: asyncio.Queue, engine: Engine, req: ChatRequest, meta: _Meta,
               transcripts: Transcripts, keepalive_s: float):
    """Server-sent events: a role chunk, then one chunk per text delta / audio chunk as the engine yields them, and
    a `: keep-alive` comment whenever nothing came for `keepalive_s` (queued, a long prefill)."""
    try:
        yield meta.chunk({"role": "assistant", "content": None if req.audio_out else ""})
        async for ev in _events(job, events, keepalive_s):
            if ev is None:
                yield ": keep-alive\n\n"
            elif isinstance(ev, TextDelta):
                delta = ({"audio": {"id": meta.audio_id, "transcript": ev.text}} if req.audio_out
                         else {"content": ev.text})
                yield meta.chunk(delta)
            elif isinstance(ev, AudioChunk):
                yield meta.chunk({"audio": {"id": meta.audio_id, "data": b64(pcm16_bytes(ev.wav))}})
            elif isinstance(ev, Done):
                if req.audio_out:
                    transcripts.remember(meta.audio_id, ev.text)
                    tail = {"audio": {"id": meta.audio_id, "expires_at": int(time.time()) + 3600}}
                else:
                    tail = {}
                yield meta.chunk(tail, ev.finish_reason, vita=meta.stats(ev))
                if req.include_usage:
                    body = {"id": meta.id, "object": "chat.completion.chunk", "created": meta.created,
                            "model": meta.model, "choices": [], "usage": meta.usage(ev)}
                    yield f"data: {json.dumps(body)}\n\n"
                yield "data: [DONE]\n\n"
            else:
                yield f"data: {json.dumps(_engine_error(ev, meta.id).body())}\n\n"
    finally:  # normal end, error, or the client went away (the response task is cancelled): free the slot
        engine.cancel(job)


async def _collect(request: Request, job: Job, events: asyncio.Queue, engine: Engine, req: ChatRequest,
                   meta: _Meta, transcripts: Transcripts) -> JSONResponse:
    """A non-streamed answer: wait for `Done`, cancelling the job if the client disconnects meanwhile."""
    done = None
    try:
        async for ev in _events(job, events, POLL_S):
            if ev is None:
                if await request.is_disconnected():
                    raise APIError(499, "client closed the request", "invalid_request_error")
            elif isinstance(ev, Done):
                done = ev
            elif isinstance(ev, BaseException):
                raise _engine_error(ev, meta.id)
    finally:
        engine.cancel(job)
    message: dict = {"role": "assistant", "content": done.text, "refusal": None}
    if req.audio_out:
        wav = done.wav if done.wav is not None else torch.zeros(0)
        data = wav_bytes(wav, done.sample_rate) if req.audio_format == "wav" else pcm16_bytes(wav)
        message["content"] = None
        message["audio"] = {"id": meta.audio_id, "data": b64(data), "expires_at": int(time.time()) + 3600,
                            "transcript": done.text}
        transcripts.remember(meta.audio_id, done.text)
    body = {"id": meta.id, "object": "chat.completion", "created": meta.created, "model": meta.model,
            "choices": [{"index": 0, "message": message, "finish_reason": done.finish_reason, "logprobs": None}],
            "usage": meta.usage(done), "vita": meta.stats(done)}
    return JSONResponse(body, headers={"X-Request-Id": meta.id})


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` bytes (Content-Length or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body of {int(declared)} bytes is over this server's limit of {limit} bytes "
                       "(server.max_body_bytes)", "invalid_request_error", None, "request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"request body is over this server's limit of {limit} bytes (server.max_body_bytes)",
                           "invalid_request_error", None, "request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _model_card(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "vita-audio"}
