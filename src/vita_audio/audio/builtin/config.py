"""The built-in codec's hyper-parameters: plain data, saved as `config.json` next to the weights.

Two kinds share the network: `acoustic` (codes trained for reconstruction only) and `semantic` (codes also trained
with a CTC loss on espeak-ng phonemes, through a small CTC head stored with the weights). A semantic config records
its phoneme inventory; an acoustic one writes none of the semantic keys, so its `config.json` (and the tokenizer
identity hashed from it) is what it was before semantic codecs existed, and a directory without `kind` is acoustic.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from vita_audio.audio.builtin.phonemes import INVENTORY


KINDS = ("acoustic", "semantic")
SEMANTIC_KEYS = ("kind", "phonemes", "ctc_hop_frames", "ctc_channels")


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
    # kind: acoustic | semantic; the rest is the semantic codec's CTC head (unused by an acoustic codec)
    kind: str = "acoustic"
    phonemes: tuple[str, ...] = ()  # CTC targets (ids are positions; blank = len); semantic default: INVENTORY
    ctc_hop_frames: int = 2  # STFT frames per CTC label: 100 / 2 = 50 labels/s, whatever the token rate
    ctc_channels: int = 128  # width of the CTC head (one k=3 conv over the quantised vectors, then a linear)

    @property
    def samples_per_token(self) -> int:
        return self.hop_length * self.frames_per_token

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.samples_per_token

    @property
    def ctc_labels_per_token(self) -> int:
        return self.frames_per_token // self.ctc_hop_frames

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
        object.__setattr__(self, "phonemes", tuple(self.phonemes))  # JSON / YAML give lists
        if self.kind not in KINDS:
            raise ValueError(f"codec kind {self.kind!r}: expected one of {KINDS}")
        if self.kind == "semantic" and not self.phonemes:  # the built-in espeak-ng inventory
            object.__setattr__(self, "phonemes", INVENTORY)
        if self.kind == "acoustic" and self.phonemes:
            raise ValueError("an acoustic codec has no phoneme inventory: phonemes must be empty (or kind=semantic)")
        if self.kind == "semantic" and self.frames_per_token % self.ctc_hop_frames:
            raise ValueError(f"ctc_hop_frames ({self.ctc_hop_frames}) must divide frames_per_token "
                             f"({self.frames_per_token})")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if self.kind == "acoustic":  # the acoustic layout of before: same config.json, same identity
            for k in SEMANTIC_KEYS:
                d.pop(k)
        else:
            d["phonemes"] = list(self.phonemes)
        return d

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
