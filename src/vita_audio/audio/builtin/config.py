"""The built-in codec's hyper-parameters: plain data, saved as `config.json` next to the weights."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CodecConfig:
    """Sizes and signal parameters of the built-in codec (defaults: 25 tokens/s, 2048 codes, 16 kHz)."""

    sample_rate: int = 16000
    hop_length: int = 160  # STFT hop: 100 frames/s
    n_fft: int = 640  # 40 ms Hann window, 4x overlap (what Griffin-Lim likes)
    n_mels: int = 80  # encoder input
    frames_per_token: int = 4  # 100 / 4 = 25 tokens/s
    codebook_size: int = 2048
    latent_dim: int = 64
    enc_channels: int = 256
    enc_blocks: int = 3
    dec_channels: int = 256
    dec_blocks: int = 5  # each valid k=3 block sees one more token on each side: lookahead = dec_blocks tokens
    target_rms: float = 0.05  # waveforms are scaled to this RMS before encoding
    # vocoder (block Griffin-Lim)
    gl_iters: int = 32
    gl_momentum: float = 0.99
    gl_block_frames: int = 16  # frames finalised per block
    gl_lookahead_frames: int = 4  # future frames taken into account for each block

    @property
    def samples_per_token(self) -> int:
        return self.hop_length * self.frames_per_token

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.samples_per_token

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    def __post_init__(self) -> None:
        if self.n_fft % self.hop_length:
            raise ValueError(f"n_fft ({self.n_fft}) must be a multiple of hop_length ({self.hop_length})")
        if self.frame_rate > 50:
            raise ValueError(f"frame rate {self.frame_rate} tokens/s is above the 50/s this project allows")
        if not 2 <= self.codebook_size <= 16384:
            raise ValueError(f"codebook_size {self.codebook_size} outside [2, 16384]")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CodecConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown codec config keys {unknown}; known: {sorted(known)}")
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "CodecConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))
