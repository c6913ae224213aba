"""The chat-completions request, validated: OpenAI's audio format in, plain data out (no model calls here).

    {"model": "vita-audio", "stream": true, "modalities": ["text", "audio"], "audio": {"format": "pcm16"},
     "mode": "boost", "max_tokens": 256, "temperature": 0.7, "seed": 1, "stop": ["\\n\\n"],
     "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": B64, "format": "wav"}},
                                               {"type": "text", "text": "..."}]}]}

bytes -> `schema.parse_body` (types, ranges, unknown and unsupported fields) -> the messages and options here.
A message's parts become one ChatML turn: its text parts joined by newlines, each audio part an `<|audio|>`
placeholder in place. `mode` (vanilla | balance | boost | turbo | verified) or `schedule` ([a1, b1, ...]) pick the
decode (`inference.schedule.resolve_decode`, in app.py). `temperature: 0` is greedy: the argmax of the unpenalised
distribution unless the request asks for a `repetition_penalty`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from vita_audio.inference import MODES, Sampling
from vita_audio.model.vocab import AUDIO_PLACEHOLDER
from vita_audio.serve.errors import APIError, bad_request
from vita_audio.serve.schema import ChatBody, parse_body
from vita_audio.serve.settings import ServeSettings

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MODE_NAMES = (*MODES, "verified")
MESSAGE_KEYS = {"role", "content", "audio", "name", "refusal"}  # name / refusal: accepted, not used
PART_KEYS = {"text": {"type", "text"}, "input_audio": {"type", "input_audio"}}
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "repetition_penalty", "seed")


@dataclass
class AudioPart:
    data: object
    format: object
    param: str  # where it sits in the request, for error messages


@dataclass
class ChatRequest:
    turns: list[tuple[str, str]]  # (role, content with <|audio|> placeholders)
    audio: list[AudioPart]  # one per placeholder, in order
    stream: bool
    audio_out: bool
    audio_format: str
    mode: str | None  # the name asked for (None = the server's default)
    schedule: list[int] | None  # an explicit list, when given
    max_tokens: int
    sampling: Sampling
    stop: tuple[str, ...] = ()  # text stop sequences
    include_usage: bool = False
    drafting: str | None = None  # what MCTP steps may write (None = the library's default: audio spans only)


class Transcripts:
    """Transcripts of recent spoken answers by audio id (a later turn may refer to one); thread-safe, bounded."""

    def __init__(self, kept: int = 1024) -> None:
        self.kept, self._items, self._lock = kept, OrderedDict(), threading.Lock()

    def remember(self, audio_id: str, text: str) -> None:
        with self._lock:
            self._items[audio_id] = text
            while len(self._items) > self.kept:
                self._items.popitem(last=False)

    def get(self, audio_id: str) -> str | None:
        with self._lock:
            return self._items.get(audio_id)


def parse_request(raw: bytes, settings: ServeSettings, transcripts: Transcripts | None = None) -> ChatRequest:
    """Validate a JSON body; raises a 400 `APIError` (404 for an unknown model) naming the field."""
    body = parse_body(raw)
    if body.model is not None and body.model != settings.model_name:
        raise APIError(404, f"the model {body.model!r} does not exist; this server serves {settings.model_name!r}",
                       "invalid_request_error", "model", "model_not_found")
    turns, audio = _messages(body.messages, transcripts)
    if len(audio) > settings.max_audio_parts:
        raise bad_request(f"the request has {len(audio)} input_audio parts; this server accepts at most "
                          f"{settings.max_audio_parts}", audio[settings.max_audio_parts].param, "too_many_audio_parts")
    modalities = body.modalities or ["text"]
    if "text" not in modalities:
        raise bad_request(f"modalities must be [\"text\"] or [\"text\", \"audio\"], got {modalities!r}", "modalities")
    audio_out = "audio" in modalities
    fmt = (body.audio.format if body.audio is not None else None) or ("pcm16" if body.stream else "wav")
    if body.stream and audio_out and fmt != "pcm16":
        raise bad_request("streamed audio is sent as pcm16 chunks (as in OpenAI's API): use audio.format=pcm16, "
                          "or stream=false for a wav", "audio.format")
    mode = None if body.mode is None else body.mode.strip().lower()
    if mode is not None and mode not in MODE_NAMES:
        raise bad_request(f"unknown mode {body.mode!r}; choose one of {', '.join(MODE_NAMES)}", "mode", "invalid_mode")
    stops = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    include_usage = body.stream and body.stream_options is not None and body.stream_options.include_usage
    return ChatRequest(turns, audio, body.stream, audio_out, fmt, mode, body.schedule, _max_tokens(body, settings),
                       _sampling(body, settings), stops, include_usage, body.drafting)


def _messages(messages: list, transcripts: Transcripts | None) -> tuple[list[tuple[str, str]], list[AudioPart]]:
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list of {\"role\", \"content\"} objects", "messages")
    turns, audio = [], []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise bad_request(f"{where} needs a role of {', '.join(ROLES)}", f"{where}.role")
        extra = set(m) - MESSAGE_KEYS
        if extra:
            raise bad_request(f"{where}: unknown field {sorted(extra)[0]!r} (a message has {', '.join(MESSAGE_KEYS)})",
                              f"{where}.{sorted(extra)[0]}", "unknown_parameter")
        role, content = ROLES[m["role"]], m.get("content")
        texts: list[str] = []
        if content is None and role == "assistant" and isinstance(m.get("audio"), dict):
            aid = m["audio"].get("id")  # an earlier spoken answer, referred to by id: its transcript
            said = transcripts.get(aid) if transcripts is not None and isinstance(aid, str) else None
            if said is None:
                raise bad_request(f"{where}.audio.id {aid!r} is unknown (expired or from another server): send "
                                  "the answer's transcript as content instead", f"{where}.audio.id")
            texts.append(said)
        elif isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list) and content:
            for j, part in enumerate(content):
                p = f"{where}.content[{j}]"
                kind = part.get("type") if isinstance(part, dict) else None
                if kind in PART_KEYS and set(part) != PART_KEYS[kind]:
                    raise bad_request(f"{p}: a {kind} part is {{{', '.join(sorted(PART_KEYS[kind]))}}}, got "
                                      f"{{{', '.join(sorted(part))}}}", p)
                if kind == "text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif kind == "input_audio" and role == "user" and isinstance(part.get("input_audio"), dict):
                    texts.append(AUDIO_PLACEHOLDER)
                    audio.append(AudioPart(part["input_audio"].get("data"), part["input_audio"].get("format"),
                                           f"{p}.input_audio"))
                else:
                    raise bad_request(f"{p}: unsupported content part {kind!r} (use text parts, and input_audio "
                                      "parts in user messages)", p)
        else:
            raise bad_request(f"{where}.content must be a string or a non-empty list of parts", f"{where}.content")
        text = "\n".join(t for t in texts if t)
        if text.count(AUDIO_PLACEHOLDER) != sum(t == AUDIO_PLACEHOLDER for t in texts):
            raise bad_request(f"{where}: the text may not contain {AUDIO_PLACEHOLDER!r}; send audio as an "
                              "input_audio part", f"{where}.content")
        if not text.strip() and role != "assistant":  # an earlier answer may have been audio only
            raise bad_request(f"{where} is empty", f"{where}.content")
        turns.append((role, text))
    if turns[-1][0] != "user":
        raise bad_request("the last message must be the user's", f"messages[{len(turns) - 1}].role")
    return turns, audio


def _max_tokens(body: ChatBody, settings: ServeSettings) -> int:
    name = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
    v = getattr(body, name)
    if v is None:
        return settings.max_tokens
    if v > settings.max_tokens:
        raise bad_request(f"{name} must be an integer in [1, {settings.max_tokens}], got {v!r}", name)
    return v


def _sampling(body: ChatBody, settings: ServeSettings) -> Sampling:
    """The server's defaults, overridden by the request. `temperature: 0` (OpenAI's greedy) is the argmax of the
    unpenalised distribution: the server's default repetition penalty does not apply, the request's does."""
    cfg = dict(settings.sampling)
    asked = {name: getattr(body, name) for name in SAMPLING_FIELDS if getattr(body, name) is not None}
    cfg.update(asked)
    if cfg.get("temperature") == 0:
        cfg.update(do_sample=False, temperature=1.0, repetition_penalty=asked.get("repetition_penalty"))
    try:
        return Sampling(**cfg)
    except (TypeError, ValueError) as err:  # name the field the message is about (one the request gave first)
        named = [n for n in SAMPLING_FIELDS if n in str(err)]
        param = next((n for n in named if n in asked), named[0] if named else None)
        raise bad_request(str(err), param) from None
