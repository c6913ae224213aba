"""Stand-ins shared by the tests."""

from __future__ import annotations

import torch

from vita_audio.audio.interface import AudioTokenizer


class EnergyTokenizer(AudioTokenizer):
    """Frame log-energy quantised to `codebook_size` levels: deterministic, instant, content-dependent."""

    frame_rate = 25.0
    sample_rate = 16000

    def __init__(self, codebook_size: int = 1024, tag: str = "v1", **_ignored) -> None:
        self.codebook_size, self.tag, self.calls = codebook_size, tag, 0

    @property
    def identity(self) -> str:
        return f"energy-{self.codebook_size}-{self.tag}"

    def encode(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        self.calls += 1
        hop = int(sample_rate / self.frame_rate)
        n = max(1, wav.numel() // hop)
        frames = wav[: n * hop].reshape(n, hop) if wav.numel() >= hop else wav.reshape(1, -1)
        e = torch.log10(frames.pow(2).mean(1) + 1e-8)  # about -8..0
        return ((e + 8) / 8 * (self.codebook_size - 1)).round().clamp(0, self.codebook_size - 1).long()
