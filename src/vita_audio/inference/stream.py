"""Speech out, streamed: text deltas and audio chunks as the decoder emits tokens (batch 1).

    for event in stream(lm, prompt_ids, detokenizer, schedule="boost"):
        if isinstance(event, TextDelta): print(event.text, end="")
        elif isinstance(event, AudioChunk): play(event.wav, event.sample_rate)
        else: result = event  # Finished: all tokens, text, codes, timing

Every audio span of an answer (Boost cuts one utterance into chunks of 8 codes, each between its own markers) feeds
one streaming detokenizer session, so each code is synthesised once, as it arrives; the concatenated chunks equal
the offline `detokenizer.decode` of the same codes. Tokens are routed (code / marker / stop / text) by
`routing.TokenRouter`, the component the server's engine uses too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from vita_audio.audio.interface import AudioDetokenizer
from vita_audio.inference.decoder import Decoder
from vita_audio.inference.generate import default_schedule
from vita_audio.inference.routing import TokenRouter
from vita_audio.inference.sampling import Sampling
from vita_audio.inference.schedule import DEFAULT_DRAFTING
from vita_audio.model.lm import VitaAudioLM


@dataclass
class TextDelta:
    text: str


@dataclass
class AudioChunk:
    wav: torch.Tensor  # (S,) float in [-1, 1]
    sample_rate: int
    elapsed: float  # seconds from the start of the generation to this chunk


@dataclass
class Finished:
    tokens: list[int]  # every new id (stop included)
    text: str
    codes: torch.Tensor  # (N,) all audio codes of the answer
    wav: torch.Tensor | None  # (S,) the whole answer's audio (the chunks concatenated), None without audio
    sample_rate: int | None
    backbone_forwards: int
    mctp_steps: int
    first_audio_s: float | None  # time to the first audio chunk
    elapsed: float
    accepted: list[int] = field(default_factory=list)


def stream(
    lm: VitaAudioLM,
    input_ids: Sequence[int],
    detokenizer: AudioDetokenizer | None = None,
    *,
    schedule: str | Sequence[int] | None = None,
    max_new_tokens: int = 512,
    sampling: Sampling | None = None,
    stop_ids: Sequence[int] | None = None,
    verify: bool = False,
    audio_features: torch.Tensor | None = None,
    drafting: str = DEFAULT_DRAFTING,
    force_text: Sequence[int] | None = None,
    interleave_ratio: Sequence[int] | None = None,
) -> Iterator[TextDelta | AudioChunk | Finished]:
    """Decode one prompt, yielding `TextDelta`s and (with a detokenizer) `AudioChunk`s, then one `Finished`.
    `audio_features`: a Plus model's encoder frames (N, D), one per `<|context_of_audio|>` of the prompt.
    `drafting`: "audio" (MCTP steps inside audio spans only) or "all" (the reference's); see `schedule.py`.
    `force_text`: the answer's text ids, forced into its text chunks (the model writes only audio; `forcing.py`)."""
    bb = lm.backbone
    dec = Decoder(lm, [list(input_ids)], schedule=default_schedule(lm) if schedule is None else schedule,
                  max_new_tokens=max_new_tokens, sampling=sampling, stop_ids=stop_ids, verify=verify,
                  audio_features=audio_features, drafting=drafting,
                  force_text=None if force_text is None else [list(force_text)], interleave_ratio=interleave_ratio)
    router = TokenRouter(bb.tokenizer, bb.audio_vocab, dec.stop_ids)
    session = detokenizer.stream() if detokenizer is not None else None
    sr = detokenizer.sample_rate if detokenizer is not None else None
    pieces: list[torch.Tensor] = []
    first_audio = None
    t0 = time.perf_counter()
    for step in dec.steps():
        if not bool(step.active[0]):
            break
        route = router.push(int(step.tokens[0]))
        if route.kind == "code" and session is not None:
            wav = session.push(torch.tensor([route.code]))
            if wav.numel():
                pieces.append(wav)
                first_audio = first_audio if first_audio is not None else time.perf_counter() - t0
                yield AudioChunk(wav, sr, time.perf_counter() - t0)
        elif route.text:
            yield TextDelta(route.text)
    tail = router.finish()
    if tail:
        yield TextDelta(tail)
    if session is not None and router.codes:
        wav = session.finish()
        if wav.numel():
            pieces.append(wav)
            first_audio = first_audio if first_audio is not None else time.perf_counter() - t0
            yield AudioChunk(wav, sr, time.perf_counter() - t0)
    full = torch.cat(pieces) if pieces else None
    codes = torch.tensor(router.codes, dtype=torch.long)
    yield Finished(router.tokens, router.text, codes, full, sr, dec.backbone_forwards, dec.mctp_steps, first_audio,
                   time.perf_counter() - t0, list(dec.accepted))


def collect(events: Iterator[TextDelta | AudioChunk | Finished]) -> Finished:
    """Run a stream to its end and return its `Finished` event."""
    last = None
    for last in events:
        pass
    return last
