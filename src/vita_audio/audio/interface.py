"""What the rest of the framework knows about audio: codes in, waveforms out.

An `AudioTokenizer` turns a mono waveform into a 1-D sequence of discrete codes at `frame_rate` codes per
second; an `AudioDetokenizer` turns codes back into a waveform, offline (`decode`) or incrementally
(`stream()` -> `StreamingSession`). Implementations: the built-in offline codec (`audio=builtin`) and
GLM-4-Voice (`audio=glm4voice`), selected by the Hydra group `conf/audio/`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class AudioTokenizer(ABC):
    """waveform -> codes."""

    #: codes per second of audio
    frame_rate: float
    #: number of distinct codes (vocabulary entries `<|audio_0|>` .. `<|audio_{codebook_size-1}|>`)
    codebook_size: int
    #: the sample rate `encode` works at internally (inputs at other rates are resampled)
    sample_rate: int

    @property
    @abstractmethod
    def identity(self) -> str:
        """A stable string naming this tokenizer and its weights (a cache key: changes when the codes would)."""

    @abstractmethod
    def encode(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """wav: (S,) float mono at `sample_rate` -> LongTensor (N,) of codes in [0, codebook_size)."""

    def encode_batch(self, wavs: list[torch.Tensor], sample_rate: int) -> list[torch.Tensor]:
        """Encode several waveforms; implementations batch where it helps."""
        return [self.encode(w, sample_rate) for w in wavs]


class StreamingSession(ABC):
    """Incremental decoding: the cost of each `push` is proportional to the codes pushed, not to the history."""

    @abstractmethod
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: LongTensor (n,) -> the new waveform samples (m,) that are final now (may be empty)."""

    @abstractmethod
    def finish(self) -> torch.Tensor:
        """Flush: the remaining samples. The concatenation of all pushes and `finish` is the whole utterance."""


class AudioDetokenizer(ABC):
    """codes -> waveform."""

    #: sample rate of the waveforms produced
    sample_rate: int

    @abstractmethod
    def decode(self, codes: torch.Tensor) -> tuple[torch.Tensor, int]:
        """codes: LongTensor (N,) -> (wav (S,) float in [-1, 1], sample_rate)."""

    @abstractmethod
    def stream(self) -> StreamingSession:
        """A new, independent streaming session (sessions share no state)."""
