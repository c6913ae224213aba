"""What the engine schedules: a `Job` (one request's decode), a `Group` (one batched `Decoder` over 1..max_batch
jobs) and its `Row`s (one per job: its `TokenRouter` (code / marker / stop / text, shared with `stream()`), stop
sequences, the codec lane, timing), and the `Done` event.

Jobs batch when their decode options are equal up to the seed and the budget: the decoder takes one seed and one
max_new_tokens per row.

Rows of one group share the decoder's prefill and every step; a row that has finished (stop, max_tokens, a stop
sequence, cancelled) gets no more events, but the decoder still computes it until the whole group ends, so it keeps
its slot until then (`Engine` counts slots per group).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from vita_audio.inference import AudioChunk, Decoder, Sampling
from vita_audio.inference.routing import TokenRouter
from vita_audio.inference.schedule import DEFAULT_DRAFTING
from vita_audio.serve.lanes import CodecLane
from vita_audio.serve.stops import StopText

log = logging.getLogger(__name__)
FIRST_BACKLOG = 4  # codes queued for the codec after which a row waiting for its first chunk stops decoding on
FIRST_PRIORITY_TOKENS = 64  # a row that has no first output after this many tokens loses its first priority


class DeadlineExceeded(Exception):
    """A request was not answered within the server's `request_timeout_s`."""


@dataclass
class Done:
    text: str
    tokens: list[int]
    wav: torch.Tensor | None  # (S,) the whole answer's audio, None without audio
    sample_rate: int | None
    finish_reason: str  # "stop" | "length"
    first_audio_s: float | None  # from admission to the first audio chunk
    first_audio_forwards: int | None  # backbone forwards run by then (1 in Boost / Turbo: the prefill)
    queued_s: float  # from submission to admission
    elapsed_s: float  # from admission to the end
    backbone_forwards: int  # of the group the row was decoded in
    mctp_steps: int
    batch: int  # rows of that group


@dataclass(eq=False)
class Job:
    """One request's decode: prompt ids and options; `sink(event)` is called from the engine (or codec) threads."""

    prompt: list[int]
    sink: Callable[[object], None]
    schedule: list[int]
    verify: bool = False
    sampling: Sampling | None = None
    stop_ids: list[int] | None = None
    max_new_tokens: int = 512
    audio_out: bool = True
    audio_features: torch.Tensor | None = None  # Plus models: (N, D) encoder frames of the prompt's placeholders
    stop_text: tuple[str, ...] = ()  # text stop sequences: the answer ends where one begins
    deadline: float | None = None  # time.perf_counter() after which the job fails with DeadlineExceeded
    drafting: str = DEFAULT_DRAFTING  # what MCTP steps may write: "audio" (spans only) or "all" (the reference's)
    cancelled: bool = False
    submitted: float = field(default_factory=time.perf_counter)

    def key(self) -> tuple:
        """Jobs with equal keys may share one batched decoder (if their budgets fit together: `fits`); the seed
        is not part of it (each row has its own)."""
        stops = None if self.stop_ids is None else tuple(self.stop_ids)
        sampling = None if self.sampling is None else replace(self.sampling, seed=None)
        return tuple(self.schedule), self.verify, self.drafting, sampling, stops, self.audio_out

    def emit(self, event: object) -> None:
        """Hand `event` to the sink; a sink that fails (its client's event loop gone) cancels the job, and never
        stops the engine or codec thread that called it."""
        try:
            self.sink(event)
        except Exception:  # noqa: BLE001
            log.exception("a request's event sink failed: the request is cancelled")
            self.cancelled = True

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now > self.deadline


def fits(jobs: list[Job], n_pos: int | None) -> bool:
    """One decoder over `jobs` stays within the model's positions: it left-pads every prompt to the longest and
    runs the largest max_new_tokens for every row."""
    return n_pos is None or max(len(j.prompt) for j in jobs) + max(j.max_new_tokens for j in jobs) <= n_pos


class Row:
    def __init__(self, job: Job, router: TokenRouter, started: float) -> None:
        self.job, self.router, self.stop = job, router, StopText(job.stop_text)
        self.lane: CodecLane | None = None  # audio out: the row's detokenizer session on the codec pool
        self.sr: int | None = None
        self.sent = ""  # text sent to the client (cut at a stop sequence)
        self.pieces: list[torch.Tensor] = []
        self.first_audio: float | None = None
        self.first_audio_forwards: int | None = None  # backbone forwards run when the first chunk's codes came
        self.started = started
        self.queued = started - job.submitted
        self.first_output = False
        self.finish_reason = "length"
        self.forwards = self.mctp_steps = 0
        # both set under the engine's lock: decoding over / the answer's last event (Done or error) claimed
        self.done = False
        self.ended = False

    @property
    def tokens(self) -> list[int]:
        """Every token of the answer so far (the stop included)."""
        return self.router.tokens

    def audio(self, wav: torch.Tensor, forwards: int) -> None:
        now = time.perf_counter()
        if self.first_audio is None:
            self.first_audio, self.first_audio_forwards = now - self.started, forwards
        self.first_output = True
        self.pieces.append(wav)
        self.job.emit(AudioChunk(wav, self.sr, now - self.started))


class Group:
    """One batched `Decoder` over jobs with equal keys (one seed and one budget per row) and its rows."""

    def __init__(self, lm, jobs: list[Job]) -> None:
        j = jobs[0]
        frames = [x.audio_features for x in jobs if x.audio_features is not None]  # row-major, as the rows
        seeds = [None if x.sampling is None else x.sampling.seed for x in jobs]
        self.dec = Decoder(lm, [x.prompt for x in jobs], schedule=j.schedule, verify=j.verify,
                           max_new_tokens=[x.max_new_tokens for x in jobs], sampling=j.sampling, seeds=seeds,
                           stop_ids=j.stop_ids, audio_features=torch.cat(frames) if frames else None,
                           drafting=j.drafting)
        now = time.perf_counter()
        bb = lm.backbone
        self.rows = [Row(x, TokenRouter(bb.tokenizer, bb.audio_vocab, self.dec.stop_ids), now) for x in jobs]
        self.steps = self.dec.steps()
        self.created = now
        self.closed = False

    def live(self) -> list[Row]:
        return [r for r in self.rows if not r.done]

    def waiting_first(self) -> bool:
        """A live row has no first output yet and has not spent its `FIRST_PRIORITY_TOKENS` looking for it (an
        answer that never speaks must not keep first priority)."""
        return any(not r.first_output and len(r.tokens) < FIRST_PRIORITY_TOKENS for r in self.live())

    def codec_bound(self) -> bool:
        """Every row still waiting for its first audio has enough codes queued for the codec."""
        waiting = [r for r in self.live() if not r.first_output]
        return bool(waiting) and all(r.lane is not None and r.lane.backlog >= FIRST_BACKLOG for r in waiting)
