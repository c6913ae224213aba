"""Audio synthesis beside decoding: each answer's streaming detokenizer session is a `CodecLane` that the engine
thread feeds with codes and that runs on a shared thread pool.

    engine thread:  ... token -> lane.push(code) -> next decoder step ...        (never waits for the codec)
    codec pool:     lane A: push, push, push -> AudioChunk      lane B: push ...  (lanes in parallel)

One task at most runs per lane and it takes the lane's codes in order, so every answer's audio is synthesised
code by code exactly as a single session would (chunks concatenate to the offline decode); different answers'
lanes run on different pool threads at once (torch releases the GIL in its kernels). With `pool=None` the work
runs inline, in the caller's thread.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

import torch

from vita_audio.audio.interface import StreamingSession


class CodecLane:
    """One session fed in order. `on_audio(wav, forwards)` gets every non-empty chunk (with the backbone forwards
    run when its last code was decoded), `on_end(error)` is called once after `close()` (error None) or on a
    failure; after `abort()` neither is called again."""

    def __init__(self, session: StreamingSession, pool: Executor | None,
                 on_audio: Callable[[torch.Tensor, int], None], on_end: Callable[[Exception | None], None]) -> None:
        self.session, self.pool, self.on_audio, self.on_end = session, pool, on_audio, on_end
        self._lock = threading.Lock()
        self._codes: deque[tuple[int, int]] = deque()  # (code, backbone forwards when it was decoded)
        self._closing = self._running = self._dead = False
        self._last_forwards = 0

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
            if self._running or self._dead:
                return
            self._running = True
        if self.pool is None:
            self._drain()
        else:
            self.pool.submit(self._drain)

    def _drain(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._dead:
                        self._running = False
                        return
                    if self._codes:
                        code, fw = self._codes.popleft()
                    elif self._closing:
                        self._dead = True  # finish below, once
                        code = None
                    else:
                        self._running = False
                        return
                if code is None:
                    wav = self.session.finish()
                    if wav.numel():
                        self.on_audio(wav, self._last_forwards)
                    self.on_end(None)
                    return
                self._last_forwards = fw
                wav = self.session.push(torch.tensor([code]))
                if wav.numel():
                    self.on_audio(wav, fw)
        except Exception as err:  # noqa: BLE001 - reported to the answer's client; the pool goes on
            with self._lock:
                self._dead, self._running = True, False
            self.on_end(err)
