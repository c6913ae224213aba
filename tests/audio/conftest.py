"""Shared fixtures: synthetic speech-like audio (no TTS needed), a tiny codec trained for a few steps, and the
log-mel distance that the stream-vs-whole-utterance bounds are stated in."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vita_audio.audio.builtin import CodecConfig, TrainArgs, load_codec, train_codec
from vita_audio.audio.builtin.features import mel_filterbank
from vita_audio.audio.io import write_audio

TINY = CodecConfig(codebook_size=32, latent_dim=8, enc_channels=32, enc_blocks=1, dec_channels=32, dec_blocks=2,
                   gl_iters=4)
TINY_ARGS = TrainArgs(steps=80, batch_size=8, crop_tokens=8, lr=5e-3, warmup_steps=5, restart_every=10, num_threads=1)


def speechlike(seconds: float, seed: int, sr: int = 16000) -> np.ndarray:
    """Harmonic 'vowels' with a gliding pitch, a 4 Hz syllable envelope and noise 'consonants'."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * np.sin(2 * math.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * math.pi * np.cumsum(f0) / sr
    amps = rng.uniform(0.2, 1.0, 12) / np.arange(1, 13)
    voiced = sum(a * np.sin((k + 1) * phase) for k, a in enumerate(amps))
    env = np.clip(np.sin(2 * math.pi * 4 * t + rng.uniform(0, 6)), 0, None) ** 2
    noise = rng.standard_normal(t.size) * (1 - env) * 0.05
    x = voiced * env + noise
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def log_mel_distance(a: torch.Tensor, b: torch.Tensor, sample_rate: int) -> float:
    """Mean |log mel power(a) - log mel power(b)| of two equal-length waveforms (S,): 80 HTK mel bands of a
    1024-point STFT, hop 256, natural log, power floored at 1e-8 (about 80 dB below full scale)."""
    if a.shape != b.shape:
        raise ValueError(f"log_mel_distance compares equal lengths, got {tuple(a.shape)} and {tuple(b.shape)}")
    fb = mel_filterbank(80, 1024, sample_rate)  # (80, 513)

    def log_mel(x: torch.Tensor) -> torch.Tensor:  # (S,) -> (80, S / 256 + 1)
        spec = torch.stft(x.float(), 1024, 256, window=torch.hann_window(1024), return_complex=True)
        return torch.log((fb @ spec.abs().pow(2)).clamp(min=1e-8))

    return float((log_mel(a) - log_mel(b)).abs().mean())


@pytest.fixture(autouse=True)
def one_thread():
    """The codec's small convs and FFTs gain nothing from a second thread and lose a lot on a busy machine."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="session")
def wav_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("wavs")
    for i in range(4):
        write_audio(d / f"utt{i}.wav", torch.from_numpy(speechlike(1.5 + 0.25 * i, seed=i)), 16000)
    return d


@pytest.fixture(scope="session")
def codec_dir(tmp_path_factory, wav_dir):
    torch.manual_seed(0)
    return train_codec(wav_dir, tmp_path_factory.mktemp("codec") / "tiny", TINY, TINY_ARGS)


@pytest.fixture(scope="session")
def codec(codec_dir):
    return load_codec(codec_dir)
