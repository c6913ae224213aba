"""What the framework knows about a continuous audio encoder (the input side of the Plus variants).

    encoder.encode(wav, sample_rate) -> frames (N, dim) float32; N = encoder.num_frames(len(wav)) at 16 kHz

The LM never sees waveforms: each input audio becomes `<|begin_of_audio|>` + N placeholder positions +
`<|end_of_audio|>`, and the adapter's image of the N frames is scattered into the input embeddings there.
`identity` keys the feature cache (it changes whenever the frames would).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class ContinuousAudioEncoder(ABC):
    """Interface (a mixin: implementations are `nn.Module`s as well); a class that leaves out a member cannot be
    instantiated."""

    #: extra frames the encoder prepends (SenseVoice: 4 query frames)
    num_queries: int = 0

    @property
    @abstractmethod
    def dim(self) -> int:  # width of each output frame
        ...

    @property
    @abstractmethod
    def sample_rate(self) -> int:  # rate `encode` works at (inputs are resampled)
        ...

    @property
    @abstractmethod
    def frame_rate(self) -> float:  # output frames per second of audio (the query frames aside)
        ...

    @property
    @abstractmethod
    def identity(self) -> str:
        ...

    @abstractmethod
    def num_frames(self, num_samples: int) -> int:
        """Output frames of a waveform of `num_samples` samples at `sample_rate`."""
        ...

    @abstractmethod
    def encode(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """wav (S,) mono -> frames (num_frames(S), dim) float32 on the CPU."""
        ...

    def encode_batch(self, wavs: list[torch.Tensor], sample_rate: int) -> list[torch.Tensor]:
        return [self.encode(w, sample_rate) for w in wavs]
