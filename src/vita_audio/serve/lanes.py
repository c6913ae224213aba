"""Audio synthesis beside decoding: each answer's streaming detokenizer session is a `CodecLane` that the engine
thread feeds with codes, run by a small `CodecPool` of worker threads.

    engine thread:  ... token -> lane.push(code) -> next decoder step ...      (never waits for the codec)
    codec pool:     lanes taken by priority, a slice of codes at a time: lanes of answers that have not sent
                    their first audio chunk first, then the others round robin (a long answer's backlog never
                    holds a thread while a new answer waits for its first chunk)

A lane is never run by two threads at once and takes its codes in order, so every answer's audio is synthesised
code by code exactly as a single session would (the chunks concatenate to the offline decode); different lanes run
on different threads at once (torch releases the GIL in its kernels). With `pool=None` a lane runs inline, in the
caller's thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable

import torch

from vita_audio.audio.interface import StreamingSession

log = logging.getLogger(__name__)
SLICE = 4  # codes a worker synthesises for one lane before it looks for a more urgent lane


class CodecPool:
    """`threads` workers running scheduled lanes, most urgent first (lanes without audio yet, then FIFO)."""

    def __init__(self, threads: int) -> None:
        self._heap: list[tuple[int, int, CodecLane]] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._stop = False
        self._threads = [threading.Thread(target=self._work, name=f"vita-codec-{i}", daemon=True)
                         for i in range(threads)]
        for t in self._threads:
            t.start()

    def schedule(self, lane: CodecLane) -> None:
        with self._cv:
            heapq.heappush(self._heap, (0 if not lane.started else 1, next(self._seq), lane))
            self._cv.notify()

    def shutdown(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        for t in self._threads:
            t.join(timeout)

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._heap and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                lane = heapq.heappop(self._heap)[2]
            if lane.run(SLICE):
                self.schedule(lane)


class CodecLane:
    """One session fed in order. `on_audio(wav, forwards)` gets every non-empty chunk (with the backbone forwards
    run when its last code was decoded), `on_end(error)` is called once after `close()` (error None) or on a
    failure; after `abort()` neither is called again."""

    def __init__(self, session: StreamingSession, pool: CodecPool | None,
                 on_audio: Callable[[torch.Tensor, int], None], on_end: Callable[[Exception | None], None]) -> None:
        self.session, self.pool, self.on_audio, self.on_end = session, pool, on_audio, on_end
        self._lock = threading.Lock()
        self._codes: deque[tuple[int, int]] = deque()  # (code, backbone forwards when it was decoded)
        self._closing = self._scheduled = self._dead = False
        self._last_forwards = 0
        self.started = False  # a chunk came out

    @property
    def backlog(self) -> int:
        return len(self._codes)

    def push(self, code: int, forwards: int) -> None:
        with self._lock:
            self._codes.append((code, forwards))
        self._kick()

    def close(self) -> None:
        with self._lock:
            self._closing = True
        self._kick()

    def abort(self) -> None:
        with self._lock:
            self._dead = True
            self._codes.clear()

    def _kick(self) -> None:
        with self._lock:
            if self._scheduled or self._dead:
                return
            self._scheduled = True
        if self.pool is None:
            while self.run(SLICE):
                pass
        else:
            self.pool.schedule(self)

    def run(self, limit: int) -> bool:
        """Synthesise up to `limit` codes (or finish); True when the lane has more work and stays scheduled."""
        try:
            for _ in range(limit):
                with self._lock:
                    if self._dead:
                        self._scheduled = False
                        return False
                    if self._codes:
                        code, fw = self._codes.popleft()
                    elif self._closing:
                        self._dead = True  # finished below, once
                        code = None
                    else:
                        self._scheduled = False
                        return False
                if code is None:
                    wav = self.session.finish()
                    if wav.numel():
                        self.on_audio(wav, self._last_forwards)
                    self.on_end(None)
                    return False
                self._last_forwards = fw
                wav = self.session.push(torch.tensor([code]))
                if wav.numel():
                    self.started = True
                    self.on_audio(wav, fw)
            return True
        except Exception as err:  # noqa: BLE001 - reported to the answer's client; the pool goes on
            log.exception("audio synthesis failed")
            with self._lock:
                self._dead, self._scheduled = True, False
            self.on_end(err)
            return False
