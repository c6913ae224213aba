"""The generation engine: one scheduler thread owns the model and interleaves every live generation.

    submit(Job) -> waiting queue --admit--> Group (one `Decoder` over 1..max_batch rows) --step--> Row events
                 (full: Overloaded)          rows with equal decode options that wait at the same time are
                                             prefilled together

Requests announce themselves with `expect()` before their audio is encoded; while announced requests are still
on their way, the oldest waiting job is held back for at most `batch_window` seconds so that requests sent
together are prefilled together (one batched decoder) instead of one by one.

Each loop iteration admits waiting jobs into free slots, then advances ONE group by one decoder step (one token
per row). The group to step is the oldest one that still has a row without its first output (audio chunk, or
text when no audio is asked for), else the next in round-robin: a new request's first audio chunk is not stuck
behind the long tails of older answers. State lives in each group's `Decoder` (never on the model), so
generations never see each other's state. Audio is synthesised beside decoding: each answer's detokenizer session
is a `CodecLane` (`lanes.py`) on a pool of `codec_threads`, so the decoder never waits for the codec and the
answers of one batch are synthesised in parallel. A cancelled row stops receiving events and frees its slot at once; a
group whose rows are all gone is closed, which drops its decoder and caches.

Events a job's `sink` receives, from the engine thread: `TextDelta`, `AudioChunk`, then `Done` (or an Exception).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from vita_audio.audio.interface import AudioDetokenizer
from vita_audio.inference import AudioChunk, Decoder, Sampling, TextDelta
from vita_audio.inference.stream import TextStream
from vita_audio.serve.lanes import CodecLane, CodecPool

log = logging.getLogger(__name__)
FIRST_BACKLOG = 4  # codes queued for the codec after which a row waiting for its first chunk stops decoding on


class Overloaded(Exception):
    """Every slot is busy and the waiting queue is full."""


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
    """One request's decode: prompt ids and options; `sink(event)` is called from the engine thread."""

    prompt: list[int]
    sink: Callable[[object], None]
    schedule: list[int]
    verify: bool = False
    sampling: Sampling | None = None
    stop_ids: list[int] | None = None
    max_new_tokens: int = 512
    audio_out: bool = True
    audio_features: torch.Tensor | None = None  # Plus models: (N, D) encoder frames of the prompt's placeholders
    cancelled: bool = False
    submitted: float = field(default_factory=time.perf_counter)

    def key(self) -> tuple:
        """Jobs with equal keys may share one batched decoder."""
        stops = None if self.stop_ids is None else tuple(self.stop_ids)
        return tuple(self.schedule), self.verify, self.sampling, stops, self.audio_out


class _Row:
    def __init__(self, job: Job, tokenizer, started: float) -> None:
        self.job, self.text = job, TextStream(tokenizer)
        self.lane: CodecLane | None = None  # audio out: the row's detokenizer session on the codec pool
        self.sr: int | None = None
        self.tokens: list[int] = []
        self.codes = 0
        self.pieces: list[torch.Tensor] = []
        self.first_audio: float | None = None
        self.first_audio_forwards: int | None = None  # backbone forwards run when the first chunk's codes came
        self.started = started
        self.queued = started - job.submitted
        self.first_output = False
        self.done = False  # decoding over (the codec may still be synthesising its last codes)

    def audio(self, wav: torch.Tensor, forwards: int) -> None:
        now = time.perf_counter()
        if self.first_audio is None:
            self.first_audio, self.first_audio_forwards = now - self.started, forwards
        self.first_output = True
        self.pieces.append(wav)
        self.job.sink(AudioChunk(wav, self.sr, now - self.started))


class _Group:
    def __init__(self, engine: Engine, jobs: list[Job]) -> None:
        j = jobs[0]
        frames = [x.audio_features for x in jobs if x.audio_features is not None]  # row-major, as the rows
        self.dec = Decoder(engine.lm, [x.prompt for x in jobs], schedule=j.schedule, verify=j.verify,
                           max_new_tokens=max(x.max_new_tokens for x in jobs), sampling=j.sampling,
                           stop_ids=j.stop_ids, audio_features=torch.cat(frames) if frames else None)
        now = time.perf_counter()
        bb = engine.lm.backbone
        self.rows = [_Row(x, bb.tokenizer, now) for x in jobs]
        for r in self.rows:
            if engine.detokenizer is not None and r.job.audio_out:
                r.sr = engine.detokenizer.sample_rate
                r.lane = CodecLane(engine.detokenizer.stream(), engine._pool, r.audio,
                                   lambda err, r=r: engine._ended(self, r, err))
        self.steps = self.dec.steps()
        av = bb.audio_vocab
        self.audio_lo, self.audio_hi, self.stops = av.audio_offset, av.audio_end, set(self.dec.stop_ids)
        self.markers = {av.begin_of_audio, av.end_of_audio, *self.stops}
        self.created = now

    def live(self) -> list[_Row]:
        return [r for r in self.rows if not r.done]

    def waiting_first(self) -> bool:
        return any(not r.first_output for r in self.live())

    def codec_bound(self) -> bool:
        """Every row still waiting for its first audio has enough codes queued for the codec."""
        waiting = [r for r in self.live() if not r.first_output]
        return bool(waiting) and all(r.lane is not None and r.lane.backlog >= FIRST_BACKLOG for r in waiting)


class Engine:
    """Runs jobs on `lm` (+ `detokenizer` for audio out) in a background thread. Thread-safe `submit` / `cancel`.

    Args:
        lm: a `VitaAudioLM` in eval mode.
        detokenizer: the codec's detokenizer (None: text only).
        slots: rows decoded at once.
        max_queue: jobs waiting for a slot at most (`submit` raises `Overloaded` beyond).
        max_batch: rows one decoder may hold (verified mode: always 1).
        batch_window: seconds a waiting job may be held back for announced requests to join its batch.
        codec_threads: threads synthesising audio beside decoding (`lanes.py`); 0 = in the engine thread.
    """

    def __init__(self, lm, detokenizer: AudioDetokenizer | None = None, slots: int = 4, max_queue: int = 16,
                 max_batch: int = 4, batch_window: float = 0.05, codec_threads: int = 2) -> None:
        self.lm, self.detokenizer = lm, detokenizer
        self.slots, self.max_queue, self.max_batch, self.batch_window = slots, max_queue, max_batch, batch_window
        self._incoming = 0  # announced by expect(), not submitted yet
        self.codec_threads = codec_threads if detokenizer is not None else 0
        self._pool: CodecPool | None = None
        self._waiting: deque[Job] = deque()
        self._groups: deque[_Group] = deque()
        self._live = 0  # rows in groups that are not done or cancelled
        self._cv = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.completed = 0
        self.cancelled = 0
        self.errors = 0

    # -- public, any thread -------------------------------------------------------------------------------------
    def start(self) -> Engine:
        if self._thread is None:
            self._stop = False
            if self.codec_threads and self._pool is None:
                self._pool = CodecPool(self.codec_threads)
            self._thread = threading.Thread(target=self._run, name="vita-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def expect(self) -> None:
        """Reserve room for a request that will `submit(job, reserved=True)` (or `forget()`) soon; raises
        `Overloaded` when every slot and queue place is taken."""
        with self._cv:
            self._check_room()
            self._incoming += 1

    def forget(self) -> None:
        """An expected request failed before it was submitted."""
        with self._cv:
            self._incoming -= 1
            self._cv.notify_all()

    def submit(self, job: Job, reserved: bool = False) -> None:
        with self._cv:
            if reserved:
                self._incoming -= 1
            else:
                self._check_room()
            self._waiting.append(job)
            self._cv.notify_all()

    def _check_room(self) -> None:
        if self._live + len(self._waiting) + self._incoming >= self.slots + self.max_queue:
            raise Overloaded(f"all {self.slots} generation slots are busy and {len(self._waiting) + self._incoming} "
                             "request(s) are queued: retry later")

    def cancel(self, job: Job) -> None:
        """Stop a job (client gone): no more events; its slot is free for the next admission."""
        with self._cv:
            if job.cancelled:
                return
            job.cancelled = True
            if job in self._waiting:
                self._waiting.remove(job)
                self.cancelled += 1
            self._cv.notify_all()

    def stats(self) -> dict:
        with self._cv:
            return {"slots": self.slots, "active": self._live, "queued": len(self._waiting) + self._incoming,
                    "max_queue": self.max_queue, "completed": self.completed, "cancelled": self.cancelled,
                    "errors": self.errors}

    # -- the engine thread ------------------------------------------------------------------------------------
    def _run(self) -> None:
        rr = itertools.count()
        while True:
            with self._cv:
                while not self._stop:
                    hold = self._hold()
                    if self._groups or (self._waiting and hold <= 0):
                        break
                    self._cv.wait(timeout=hold if self._waiting else None)
                if self._stop:
                    break
                admitted = self._take_admissions() if self._hold() <= 0 else []
            for jobs in admitted:
                self._open(jobs)
            self._reap()
            if self._groups:
                g = self._pick(next(rr))
                if g is None:  # every group waits for the codec's first chunks
                    time.sleep(0.002)
                    continue
                try:
                    self._advance(g)
                except Exception as err:  # noqa: BLE001 - a bug must not kill the engine: fail this group only
                    log.exception("engine step failed")
                    self._abandon(g, err)
        for g in list(self._groups):
            self._close(g)

    def _hold(self) -> float:
        """Under the lock: seconds to keep the waiting jobs back for announced requests (0 = admit now)."""
        if not self._waiting or not self._incoming or self._live + len(self._waiting) >= self.slots:
            return 0.0
        return max(0.0, self.batch_window - (time.perf_counter() - self._waiting[0].submitted))

    def _take_admissions(self) -> list[list[Job]]:
        """Under the lock: move waiting jobs into free slots, grouped by decode options."""
        groups: dict[tuple, list[Job]] = {}
        out: list[list[Job]] = []
        while self._waiting and self._live < self.slots:
            job = self._waiting.popleft()
            if job.cancelled:
                continue
            self._live += 1
            cap = 1 if job.verify else self.max_batch
            batch = groups.get(job.key())
            if batch is None or len(batch) >= cap:
                batch = groups[job.key()] = []
                out.append(batch)
            batch.append(job)
        return out

    def _open(self, jobs: list[Job]) -> None:
        try:
            g = _Group(self, jobs)
        except Exception as err:  # noqa: BLE001 - a bad prompt / option: those jobs fail, the engine goes on
            with self._cv:
                self._live -= len(jobs)
            for job in jobs:
                self._fail(job, err)
            return
        self._groups.append(g)

    def _pick(self, tick: int) -> _Group | None:
        """The group to step: the oldest with a row still waiting for its first audio, else round robin. A group
        whose waiting rows already have `FIRST_BACKLOG` codes queued for the codec is skipped (the codec's first
        chunk is what they wait for; decoding further would only take its CPU); None = nothing to step now."""
        fresh = [g for g in self._groups if g.waiting_first()]
        ready = [g for g in fresh if not g.codec_bound()]
        if ready:
            return min(ready, key=lambda g: g.created)
        rest = [g for g in self._groups if not g.waiting_first()]
        if rest:
            return rest[tick % len(rest)]
        return None

    def _advance(self, g: _Group) -> None:
        try:
            step = next(g.steps, None)
        except Exception as err:  # noqa: BLE001 - a failing model call: fail its rows, keep serving
            log.exception("generation failed")
            self._abandon(g, err)
            return
        if step is None:  # max_new_tokens reached
            for r in g.live():
                self._finish(g, r, "length")
            self._close(g)
            return
        for i, r in enumerate(g.rows):
            if r.done or not bool(step.active[i]):
                continue
            self._token(g, r, int(step.tokens[i]))
        if not g.live():
            self._close(g)

    def _token(self, g: _Group, r: _Row, tok: int) -> None:
        r.tokens.append(tok)
        if g.audio_lo <= tok < g.audio_hi:
            r.codes += 1
            if r.lane is not None:
                r.lane.push(tok - g.audio_lo, g.dec.backbone_forwards)
        elif tok not in g.markers:
            delta = r.text.push(tok)
            if delta:
                if r.lane is None:
                    r.first_output = True
                r.job.sink(TextDelta(delta))
        if tok in g.stops:
            self._finish(g, r, "stop")
        elif len(r.tokens) >= r.job.max_new_tokens:
            self._finish(g, r, "length")

    def _finish(self, g: _Group, r: _Row, reason: str) -> None:
        """Decoding of row r is over: its slot is free now; `Done` follows once its audio is synthesised."""
        r.finish_reason, r.forwards, r.mctp_steps = reason, g.dec.backbone_forwards, g.dec.mctp_steps
        self._release(r)
        if r.lane is not None:
            r.lane.close()  # -> _ended, from the codec pool
        else:
            self._ended(g, r, None)

    def _ended(self, g: _Group, r: _Row, err: Exception | None) -> None:
        if err is not None:
            self._release(r)
            self._fail(r.job, err)
            return
        wav = torch.cat(r.pieces) if r.pieces else None
        done = Done(r.text.sent, r.tokens, wav, r.sr, r.finish_reason, r.first_audio, r.first_audio_forwards,
                    r.queued, time.perf_counter() - r.started, r.forwards, r.mctp_steps, len(g.rows))
        with self._cv:
            self.completed += 1
        r.job.sink(done)

    def _release(self, r: _Row) -> None:
        if not r.done:
            r.done = True
            with self._cv:
                self._live -= 1

    def _reap(self) -> None:
        """Drop cancelled rows; close groups left without rows (their decoder state goes with them)."""
        for g in list(self._groups):
            for r in g.live():
                if r.job.cancelled:
                    self._release(r)
                    if r.lane is not None:
                        r.lane.abort()
                    with self._cv:
                        self.cancelled += 1
            if not g.live():
                self._close(g)

    def _abandon(self, g: _Group, err: Exception) -> None:
        for r in g.live():
            self._release(r)
            if r.lane is not None:
                r.lane.abort()
            self._fail(r.job, err)
        self._close(g)

    def _close(self, g: _Group) -> None:
        g.steps.close()
        if g in self._groups:
            self._groups.remove(g)

    def _fail(self, job: Job, err: Exception) -> None:
        with self._cv:
            self.errors += 1
        job.sink(err)
