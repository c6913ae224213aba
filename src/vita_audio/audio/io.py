"""Audio files in and out: read, mono mixdown, resample, validate, write int16 without clipping.

Every error names the file (or the `name` the caller passes for in-memory audio) and says what was expected.
Waveforms are float32 torch tensors of shape (S,) in [-1, 1] once mixed down.
"""

from __future__ import annotations

import logging
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

log = logging.getLogger(__name__)

#: RMS below this (about -80 dBFS) counts as silence
SILENCE_RMS = 1e-4


class AudioError(ValueError):
    """A waveform or an audio file that cannot be used; the message names it and what was expected."""


def to_mono(wav: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """(S,) or (S, C) [channels_last] / (C, S) -> (S,) by averaging the channels."""
    if wav.dim() == 1:
        return wav
    if wav.dim() != 2:
        raise AudioError(f"expected a waveform of shape (S,) or 2-D with channels, got {tuple(wav.shape)}")
    return wav.mean(dim=1 if channels_last else 0)


def resample(wav: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Polyphase resampling (scipy.signal.resample_poly) of a (S,) waveform; identity when the rates match."""
    orig_sr, new_sr = int(orig_sr), int(new_sr)
    if orig_sr <= 0 or new_sr <= 0:
        raise AudioError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    if orig_sr == new_sr:
        return wav
    g = gcd(orig_sr, new_sr)
    out = resample_poly(wav.detach().cpu().double().numpy(), new_sr // g, orig_sr // g)
    return torch.from_numpy(out.astype(np.float32))


def check_audio(
    wav: torch.Tensor,
    sample_rate: int,
    name: str = "<waveform>",
    expected_sample_rate: int | None = None,
    allow_silence: bool = False,
) -> torch.Tensor:
    """Validate a mono waveform; returns it as float32. Raises `AudioError` naming `name` on:
    a wrong sample rate (when `expected_sample_rate` is given), no samples, NaN/inf, silence (unless allowed)."""
    if expected_sample_rate is not None and int(sample_rate) != int(expected_sample_rate):
        raise AudioError(
            f"{name}: sample rate {sample_rate} Hz, expected {expected_sample_rate} Hz (resample it first, "
            f"e.g. vita_audio.audio.io.resample)"
        )
    if wav.dim() != 1:
        raise AudioError(f"{name}: expected a mono waveform of shape (S,), got {tuple(wav.shape)} (use to_mono)")
    if wav.numel() == 0:
        raise AudioError(f"{name}: empty audio (0 samples)")
    wav = wav.float()
    if not torch.isfinite(wav).all():
        bad = int((~torch.isfinite(wav)).sum())
        raise AudioError(f"{name}: {bad} of {wav.numel()} samples are NaN or infinite")
    if not allow_silence and float(wav.pow(2).mean().sqrt()) < SILENCE_RMS:
        raise AudioError(f"{name}: silent audio (RMS below {SILENCE_RMS:g}, {wav.numel() / sample_rate:.2f} s)")
    return wav


def read_audio(
    path: str | Path, sample_rate: int | None = None, allow_silence: bool = False
) -> tuple[torch.Tensor, int]:
    """Read any file libsndfile understands (WAV, FLAC, OGG) -> (mono float32 (S,), rate).

    With `sample_rate`, the audio is resampled to it; otherwise the file's own rate is returned."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (S, C)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError depending on the damage
        raise AudioError(f"{path}: unreadable audio file ({type(e).__name__}: {e})") from e
    wav = to_mono(torch.from_numpy(data))
    wav = check_audio(wav, sr, name=str(path), allow_silence=allow_silence)
    if sample_rate is not None and sr != sample_rate:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return wav, int(sr)


def write_audio(path: str | Path, wav: torch.Tensor | np.ndarray, sample_rate: int, peak: float = 0.99) -> Path:
    """Write a mono waveform as 16-bit PCM WAV. If its peak exceeds `peak` it is scaled down (never clipped);
    NaNs are an error. Creates the parent directory."""
    path = Path(path)
    wav = torch.as_tensor(wav).detach().cpu().float()
    wav = check_audio(to_mono(wav), sample_rate, name=str(path), allow_silence=True)
    pcm, top = _pcm16(wav, peak)
    if top > peak:
        log.info("%s: peak %.3f scaled down to %.2f before int16 conversion", path, top, peak)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), pcm, int(sample_rate), subtype="PCM_16")
    return path


def to_int16_bytes(wav: torch.Tensor, peak: float = 0.99) -> bytes:
    """Mono float waveform -> little-endian int16 bytes (for recognisers), scaled down if it would clip."""
    return _pcm16(wav.detach().cpu().float(), peak)[0].astype("<i2").tobytes()


def _pcm16(wav: torch.Tensor, peak: float) -> tuple[np.ndarray, float]:
    """(int16 samples, original peak): scaled down to `peak` when louder (never clipped), then rounded."""
    top = float(wav.abs().max()) if wav.numel() else 0.0
    if top > peak:
        wav = wav * (peak / top)
    return torch.round(wav * 32767.0).clamp(-32768, 32767).to(torch.int16).numpy(), top
