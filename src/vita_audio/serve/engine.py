"""The generation engine: one scheduler thread owns the model and interleaves every live generation.

    submit(Job) -> waiting queue --admit--> Group (one `Decoder` over 1..max_batch rows) --step--> Row events
                 (full: Overloaded)          rows with equal decode options that wait at the same time are
                                             prefilled together, as long as their budgets fit the positions

Requests announce themselves with `expect()` before their body is read; while announced requests are still on
their way, the oldest waiting job is held back for at most `batch_window` seconds so that requests sent together
are prefilled together (one batched decoder) instead of one by one.

Each loop iteration fails jobs past their deadline, admits waiting jobs into free slots, then advances ONE group by
one decoder step (one token per row). The group to step is the oldest one that still has a row looking for its
first output (audio chunk, or text when no audio is asked for; for its first `FIRST_PRIORITY_TOKENS` tokens at
most, so an answer that never speaks cannot starve the others), else the next in round-robin. State lives in each
group's `Decoder` (never on the model), so generations never see each other's state. Audio is synthesised beside
decoding: each answer's detokenizer session is a `CodecLane` (`lanes.py`) on a pool of `codec_threads`.

Slots: a group holds one slot per row from admission until the group closes, because the decoder computes every
row until then, finished and cancelled ones included. A finished row gets no more events; a group whose rows are
all finished is closed at once, which drops its decoder and caches. A row's two flags (`done`: decoding over;
`ended`: its last event claimed) change only under the lock, so the engine and codec threads never end it twice.

Events a job's `sink` receives, from the engine or codec threads: `TextDelta`, `AudioChunk`, then `Done` (or an
Exception: `DeadlineExceeded`, a `ValueError` about the request, or a failure).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque

import torch

from vita_audio.audio.interface import AudioDetokenizer
from vita_audio.inference import TextDelta
from vita_audio.serve.group import DeadlineExceeded, Done, Group, Job, Row, fits
from vita_audio.serve.lanes import CodecLane, CodecPool

log = logging.getLogger(__name__)

__all__ = ["DeadlineExceeded", "Done", "Engine", "EngineDown", "Job", "Overloaded"]


class Overloaded(Exception):
    """Every slot is busy and the waiting queue is full."""


class EngineDown(RuntimeError):
    """The engine thread has stopped (a bug): no request can be served."""


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
        self.n_pos = getattr(lm.backbone.config, "max_position_embeddings", None)
        self._incoming = 0  # announced by expect(), not submitted yet
        self.codec_threads = codec_threads if detokenizer is not None else 0
        self._pool: CodecPool | None = None
        self._waiting: deque[Job] = deque()
        self._groups: deque[Group] = deque()
        self._used = 0  # slots held: rows of open groups (finished ones included) and of groups being opened
        self._cv = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None  # what stopped the engine thread
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

    def alive(self) -> bool:
        """The engine thread runs (started and neither stopped nor dead)."""
        return self._thread is not None and self._thread.is_alive() and self.failure is None

    def expect(self) -> None:
        """Reserve room for a request that will `submit(job, reserved=True)` (or `forget()`) soon; raises
        `Overloaded` when every slot and queue place is taken, `EngineDown` when the engine thread has died."""
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
            if self.failure is not None:
                raise EngineDown("the generation engine has stopped (see the server log)")
            if not reserved:
                self._check_room()
            self._waiting.append(job)
            self._cv.notify_all()

    def _check_room(self) -> None:
        if self.failure is not None:
            raise EngineDown("the generation engine has stopped (see the server log)")
        if self._used + len(self._waiting) + self._incoming >= self.slots + self.max_queue:
            raise Overloaded(f"all {self.slots} generation slots are busy and {len(self._waiting) + self._incoming} "
                             "request(s) are queued: retry later")

    def cancel(self, job: Job) -> None:
        """Stop a job (client gone): no more events; its slot is free once its group ends."""
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
            active = sum(not r.ended for g in self._groups for r in g.rows)
            return {"slots": self.slots, "active": active, "slots_used": self._used,
                    "queued": len(self._waiting) + self._incoming, "max_queue": self.max_queue,
                    "completed": self.completed, "cancelled": self.cancelled, "errors": self.errors}

    # -- the engine thread ------------------------------------------------------------------------------------
    def _run(self) -> None:
        """The loop, then every request still waiting or decoding fails with `EngineDown` (shutdown, or a bug in
        the scheduler itself, which `alive()` and /health then report)."""
        why = "the server is shutting down"
        try:
            self._loop()
        except BaseException as err:  # noqa: BLE001 - say so, and fail every request instead of leaving it hanging
            log.exception("the engine thread stopped")
            self.failure = err
            why = "the generation engine has stopped (see the server log)"
        with self._cv:
            waiting, self._waiting = list(self._waiting), deque()
        for job in waiting:
            self._fail(job, EngineDown(why))
        for g in list(self._groups):
            self._abandon(g, EngineDown(why))

    def _loop(self) -> None:
        rr = itertools.count()
        while True:
            with self._cv:
                while not self._stop:
                    hold = self._hold()
                    if self._groups or (self._waiting and hold <= 0):
                        break
                    self._cv.wait(timeout=hold if self._waiting else None)
                if self._stop:
                    return
                expired = self._expire_waiting()
                admitted = self._take_admissions() if self._hold() <= 0 else []
            for job in expired:
                self._fail(job, _deadline_error(job))
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

    def _hold(self) -> float:
        """Under the lock: seconds to keep the waiting jobs back for announced requests (0 = admit now)."""
        if not self._waiting or not self._incoming or self._used + len(self._waiting) >= self.slots:
            return 0.0
        return max(0.0, self.batch_window - (time.perf_counter() - self._waiting[0].submitted))

    def _expire_waiting(self) -> list[Job]:
        """Under the lock: take waiting jobs past their deadline out of the queue."""
        now = time.perf_counter()
        expired = [j for j in self._waiting if j.expired(now) and not j.cancelled]
        for j in expired:
            self._waiting.remove(j)
        return expired

    def _take_admissions(self) -> list[list[Job]]:
        """Under the lock: move waiting jobs into free slots, grouped by decode options; a job joins a batch only
        if the batch's longest prompt plus its largest max_new_tokens still fit the model's positions (each job
        fits alone: the HTTP layer checks it), so requests that fit alone never fail together."""
        out: list[list[Job]] = []
        while self._waiting and self._used < self.slots:
            job = self._waiting.popleft()
            if job.cancelled:
                continue
            self._used += 1
            cap = 1 if job.verify else self.max_batch
            batch = next((b for b in out if b[0].key() == job.key() and len(b) < cap and fits([*b, job], self.n_pos)),
                         None)
            if batch is None:
                out.append([job])
            else:
                batch.append(job)
        return out

    def _open(self, jobs: list[Job]) -> None:
        try:
            g = Group(self.lm, jobs)
        except Exception as err:  # noqa: BLE001 - a bad prompt / option: those jobs fail, the engine goes on
            with self._cv:
                self._used -= len(jobs)
            for job in jobs:
                self._fail(job, err)
            return
        for r in g.rows:
            if self.detokenizer is not None and r.job.audio_out:
                r.sr = self.detokenizer.sample_rate
                r.lane = CodecLane(self.detokenizer.stream(), self._pool, r.audio,
                                   lambda err, r=r: self._ended(g, r, err))
        with self._cv:
            self._groups.append(g)

    def _pick(self, tick: int) -> Group | None:
        """The group to step: the oldest with a row still looking for its first output, else round robin. A group
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

    def _advance(self, g: Group) -> None:
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

    def _token(self, g: Group, r: Row, tok: int) -> None:
        """Route one token of row r (`TokenRouter`): an audio code to its codec lane, text to the client (up to a
        stop sequence), a marker nowhere; a stop id, a stop sequence or the row's max_tokens finishes the row."""
        route = r.router.push(tok)
        if route.kind == "code" and r.lane is not None:
            r.lane.push(route.code, g.dec.backbone_forwards)
        elif route.kind == "text":
            self._text(r, r.stop.push(route.text))
            if r.stop.stopped:
                self._finish(g, r, "stop")
                return
        if route.kind == "stop":
            self._finish(g, r, "stop")
        elif len(r.tokens) >= r.job.max_new_tokens:
            self._finish(g, r, "length")

    def _text(self, r: Row, delta: str) -> None:
        if delta:
            r.sent += delta
            if r.lane is None:
                r.first_output = True
            r.job.emit(TextDelta(delta))

    def _finish(self, g: Group, r: Row, reason: str) -> None:
        """Decoding of row r is over: no more tokens; `Done` follows once its audio is synthesised."""
        with self._cv:
            if r.done:
                return
            r.done = True
        self._text(r, r.stop.push(r.router.finish()))  # text held back: an incomplete character at the end
        reason = "stop" if r.stop.stopped else reason
        self._text(r, r.stop.flush())
        r.finish_reason, r.forwards, r.mctp_steps = reason, g.dec.backbone_forwards, g.dec.mctp_steps
        if r.lane is not None:
            r.lane.close()  # -> _ended, from the codec pool
        else:
            self._ended(g, r, None)

    def _claim(self, r: Row) -> bool:
        """Mark row r's answer over (decoding included); True for the one caller that sends its last event."""
        with self._cv:
            if r.ended:
                return False
            r.ended = r.done = True
            return True

    def _ended(self, g: Group, r: Row, err: Exception | None) -> None:
        """Row r's audio is all synthesised (or its lane failed); any thread."""
        if not self._claim(r):
            return
        if err is not None:
            self._fail(r.job, err)
            return
        wav = torch.cat(r.pieces) if r.pieces else None
        done = Done(r.sent, r.tokens, wav, r.sr, r.finish_reason, r.first_audio, r.first_audio_forwards,
                    r.queued, time.perf_counter() - r.started, r.forwards, r.mctp_steps, len(g.rows))
        with self._cv:
            self.completed += 1
        r.job.emit(done)

    def _drop(self, r: Row, err: Exception | None) -> bool:
        """End row r now (no audio to wait for): fail it with `err`, or silently for a cancelled job."""
        if not self._claim(r):
            return False
        if r.lane is not None:
            r.lane.abort()
        if err is not None:
            self._fail(r.job, err)
        return True

    def _reap(self) -> None:
        """Drop cancelled rows and rows past their deadline; close groups left without live rows."""
        now = time.perf_counter()
        for g in list(self._groups):
            for r in g.rows:
                if r.ended:
                    continue
                if r.job.cancelled:
                    if self._drop(r, None):
                        with self._cv:
                            self.cancelled += 1
                elif r.job.expired(now):
                    self._drop(r, _deadline_error(r.job))
            if not g.live():
                self._close(g)

    def _abandon(self, g: Group, err: BaseException) -> None:
        for r in g.rows:
            self._drop(r, err)
        self._close(g)

    def _close(self, g: Group) -> None:
        """Drop the group's decoder (and caches) and free its slots."""
        if g.closed:
            return
        g.closed = True
        g.steps.close()
        with self._cv:
            self._used -= len(g.rows)
            if g in self._groups:
                self._groups.remove(g)
            self._cv.notify_all()

    def _fail(self, job: Job, err: BaseException) -> None:
        with self._cv:
            self.errors += 1
        job.emit(err)


def _deadline_error(job: Job) -> DeadlineExceeded:
    waited = time.perf_counter() - job.submitted
    return DeadlineExceeded(f"the request was not answered within the server's time limit ({waited:.1f} s "
                            "since it was queued; server.request_timeout_s)")
