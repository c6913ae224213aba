"""Time spent synthesising output audio, so the tasks can report LM decoding speed without the codec in it.

    clock = CodecClock()
    timed = clock.attach(speech)    # a shallow copy of the SpeechLM whose detokenizer reports its seconds
    clock.reset(); out = timed.run(...); clock.seconds   # the codec's share of out.elapsed

The detokenizer's streaming sessions run inside the decode loop (`inference/stream.py`), so `Finished.elapsed`
holds LM steps and codec pushes together; the clock separates them.
"""

from __future__ import annotations

import copy
import time

import torch

from vita_audio.audio.interface import AudioDetokenizer, StreamingSession


class CodecClock:
    """Accumulates the seconds of every `push`, `finish` and `decode` of a wrapped detokenizer."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def reset(self) -> None:
        self.seconds = 0.0

    def attach(self, speech):
        """A copy of `speech` (sharing its model and codec) with a timed detokenizer; `speech` is left as it is."""
        timed = copy.copy(speech)
        if getattr(speech, "detokenizer", None) is not None:
            timed.detokenizer = TimedDetokenizer(speech.detokenizer, self)
        return timed


class TimedSession(StreamingSession):
    def __init__(self, inner: StreamingSession, clock: CodecClock) -> None:
        self.inner, self.clock = inner, clock

    def push(self, codes: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        try:
            return self.inner.push(codes)
        finally:
            self.clock.seconds += time.perf_counter() - t0

    def finish(self) -> torch.Tensor:
        t0 = time.perf_counter()
        try:
            return self.inner.finish()
        finally:
            self.clock.seconds += time.perf_counter() - t0


class TimedDetokenizer(AudioDetokenizer):
    """`inner` with its time counted on `clock`; other attributes (codebook_size, ...) read through."""

    def __init__(self, inner: AudioDetokenizer, clock: CodecClock) -> None:
        self.inner, self.clock, self.sample_rate = inner, clock, inner.sample_rate

    def __getattr__(self, name: str):
        if name == "inner":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def decode(self, codes: torch.Tensor) -> tuple[torch.Tensor, int]:
        t0 = time.perf_counter()
        try:
            return self.inner.decode(codes)
        finally:
            self.clock.seconds += time.perf_counter() - t0

    def stream(self) -> StreamingSession:
        return TimedSession(self.inner.stream(), self.clock)
