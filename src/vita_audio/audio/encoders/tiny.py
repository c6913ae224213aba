"""A tiny SenseVoice-shaped encoder for the embedded default: the same front end and layer kinds, a few narrow
layers, random weights from a seed (deterministic, so its identity and features are reproducible). CPU-fast."""

from __future__ import annotations

import torch

from vita_audio.audio.encoders.fbank import CMVN, FrontendConfig
from vita_audio.audio.encoders.sensevoice import EncoderConfig, SenseVoiceEncoder


def tiny_sensevoice(seed: int = 0, output_size: int = 128, attention_heads: int = 2, linear_units: int = 128,
                    num_blocks: int = 2, tp_blocks: int = 1, kernel_size: int = 11,
                    cmvn_shift: float = -10.0, cmvn_scale: float = 0.25) -> SenseVoiceEncoder:
    """A random SenseVoice-architecture encoder (`output_size`-dim frames, about 16.7 per second + 4 queries).

    The CMVN is a global `(x + cmvn_shift) * cmvn_scale` (log-mel values of speech lie around 5..20)."""
    cfg = EncoderConfig(output_size=output_size, attention_heads=attention_heads, linear_units=linear_units,
                        num_blocks=num_blocks, tp_blocks=tp_blocks, kernel_size=kernel_size)
    fe = FrontendConfig()
    cmvn = CMVN(torch.full((fe.feature_dim,), float(cmvn_shift)), torch.full((fe.feature_dim,), float(cmvn_scale)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = SenseVoiceEncoder(cfg, fe, cmvn, name=f"tiny-sensevoice-s{seed}")
        with torch.no_grad():
            enc.embed.weight.mul_(0.1)
    return enc
