"""The chat-completions request, validated: OpenAI's audio format in, plain data out (no model calls here).

    {"model": "vita-audio", "stream": true, "modalities": ["text", "audio"], "audio": {"format": "pcm16"},
     "mode": "boost", "max_tokens": 256, "temperature": 0.7, "seed": 1,
     "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": B64, "format": "wav"}},
                                               {"type": "text", "text": "..."}]}]}

A message's parts become one ChatML turn: its text parts joined by newlines, each audio part an `<|audio|>`
placeholder in place. `mode` (vanilla | balance | boost | turbo | verified) or `schedule` ([a1, b1, ...]) pick the
decode schedule; without either, the server's default (the checkpoint's own schedule).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vita_audio.model.vocab import AUDIO_PLACEHOLDER
from vita_audio.inference import MODES, Sampling
from vita_audio.serve.errors import APIError, bad_request
from vita_audio.serve.settings import ServeSettings

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MODE_NAMES = (*MODES, "verified")
OUT_FORMATS = ("wav", "pcm16")


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
    include_usage: bool = False
    extra: dict = field(default_factory=dict)


def parse_request(body: object, settings: ServeSettings, transcripts: dict[str, str] | None = None) -> ChatRequest:
    """Validate a decoded JSON body; raises a 400 `APIError` (404 for an unknown model) naming the field."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    model = body.get("model")
    if model is not None and model != settings.model_name:
        raise APIError(404, f"the model {model!r} does not exist; this server serves {settings.model_name!r}",
                       "invalid_request_error", "model", "model_not_found")
    turns, audio = _messages(body.get("messages"), transcripts or {})
    stream = _flag(body, "stream")
    modalities = body.get("modalities") or ["text"]
    if not isinstance(modalities, list) or not set(modalities) <= {"text", "audio"} or "text" not in modalities:
        raise bad_request(f"modalities must be [\"text\"] or [\"text\", \"audio\"], got {modalities!r}",
                          "modalities")
    audio_out = "audio" in modalities
    opts = body.get("audio") or {}
    if not isinstance(opts, dict):
        raise bad_request("audio must be an object like {\"format\": \"wav\"}", "audio")
    fmt = opts.get("format") or ("pcm16" if stream else "wav")
    if fmt not in OUT_FORMATS:
        raise bad_request(f"audio.format {fmt!r} is not supported: use {' or '.join(OUT_FORMATS)}", "audio.format")
    if stream and audio_out and fmt != "pcm16":
        raise bad_request("streamed audio is sent as pcm16 chunks (as in OpenAI's API): use audio.format=pcm16, "
                          "or stream=false for a wav", "audio.format")
    mode, schedule = body.get("mode"), body.get("schedule")
    if mode is not None and (not isinstance(mode, str) or mode.strip().lower() not in MODE_NAMES):
        raise bad_request(f"unknown mode {mode!r}; choose one of {', '.join(MODE_NAMES)}", "mode", "invalid_mode")
    if schedule is not None and (not isinstance(schedule, list) or not all(isinstance(v, int) for v in schedule)):
        raise bad_request(f"schedule must be a list of integers [a1, b1, ...], got {schedule!r}", "schedule")
    return ChatRequest(turns, audio, stream, audio_out, fmt, None if mode is None else mode.strip().lower(),
                       schedule, _max_tokens(body, settings), _sampling(body, settings),
                       bool((body.get("stream_options") or {}).get("include_usage")) if stream else False)


def _flag(body: dict, name: str) -> bool:
    v = body.get(name, False)
    if not isinstance(v, bool):
        raise bad_request(f"{name} must be true or false, got {v!r}", name)
    return v


def _messages(messages: object, transcripts: dict[str, str]) -> tuple[list[tuple[str, str]], list[AudioPart]]:
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list of {\"role\", \"content\"} objects", "messages")
    turns, audio = [], []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise bad_request(f"{where} needs a role of {', '.join(ROLES)}", f"{where}.role")
        role, content = ROLES[m["role"]], m.get("content")
        texts: list[str] = []
        if content is None and role == "assistant" and isinstance(m.get("audio"), dict):
            aid = m["audio"].get("id")  # an earlier spoken answer, referred to by id: its transcript
            if aid not in transcripts:
                raise bad_request(f"{where}.audio.id {aid!r} is unknown (expired or from another server): send "
                                  "the answer's transcript as content instead", f"{where}.audio.id")
            texts.append(transcripts[aid])
        elif isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list) and content:
            for j, part in enumerate(content):
                p = f"{where}.content[{j}]"
                kind = part.get("type") if isinstance(part, dict) else None
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
        if not text.strip():
            raise bad_request(f"{where} is empty", f"{where}.content")
        turns.append((role, text))
    if turns[-1][0] != "user":
        raise bad_request("the last message must be the user's", f"messages[{len(turns) - 1}].role")
    return turns, audio


def _max_tokens(body: dict, settings: ServeSettings) -> int:
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    v = body.get(name)
    if v is None:
        return settings.max_tokens
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= settings.max_tokens:
        raise bad_request(f"{name} must be an integer in [1, {settings.max_tokens}], got {v!r}", name)
    return v


def _sampling(body: dict, settings: ServeSettings) -> Sampling:
    cfg = dict(settings.sampling)
    for name in ("temperature", "top_p", "top_k", "repetition_penalty", "seed"):
        v = body.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (name in ("top_k", "seed") and
                                                                       not isinstance(v, int)):
            raise bad_request(f"{name} must be a number, got {v!r}", name)
        cfg[name] = v
    if cfg.get("temperature") == 0:  # OpenAI's convention for greedy decoding
        cfg["do_sample"], cfg["temperature"] = False, 1.0
    try:
        return Sampling(**cfg)
    except (TypeError, ValueError) as err:
        raise bad_request(str(err), "temperature") from None
