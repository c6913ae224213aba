"""Spectral features of the built-in codec: log-mel (encoder input) and log-magnitude (decoder target).

Frame f is centred on sample f * hop (the signal is padded by n_fft/2 on each side, reflect-free: zeros), so
a waveform of S samples (S a multiple of samples_per_token) gives S / hop frames when the last one is dropped.
"""

from __future__ import annotations

import math

import torch

from vita_audio.audio.builtin.config import CodecConfig

LOG_FLOOR = 1e-3  # about 70 dB below speech at the target loudness


def _hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def _mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None):
    """Triangular HTK-scale filters with unit peaks: (n_mels, n_fft // 2 + 1)."""
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = _mel_to_hz(torch.linspace(_hz_to_mel(torch.tensor(f_min)), _hz_to_mel(torch.tensor(f_max)), n_mels + 2,
                                      dtype=torch.float64))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (M, 1)
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0.0).float()  # (M, K)


class Features(torch.nn.Module):
    """wav (B, S) -> magnitude (B, F, K) / log-mel (B, F, n_mels) / log-magnitude (B, F, K)."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)
        self.register_buffer("mel_fb", mel_filterbank(cfg.n_mels, cfg.n_fft, cfg.sample_rate), persistent=False)

    def magnitude(self, wav: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        spec = torch.stft(wav, c.n_fft, c.hop_length, window=self.window, center=True, pad_mode="constant",
                          return_complex=True)  # (B, K, S/hop + 1)
        return spec.abs()[..., :-1].transpose(1, 2)  # (B, F, K), F = S / hop

    def log_mel(self, mag: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.clamp(mag @ self.mel_fb.T, min=LOG_FLOOR))  # (B, F, M)

    @staticmethod
    def log_mag(mag: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.clamp(mag, min=LOG_FLOOR))


def pad_to_tokens(wav: torch.Tensor, samples_per_token: int) -> torch.Tensor:
    """Zero-pad the last dim up to a whole number of tokens (at least one)."""
    n = max(1, math.ceil(wav.shape[-1] / samples_per_token))
    return torch.nn.functional.pad(wav, (0, n * samples_per_token - wav.shape[-1]))


def normalise_loudness(wav: torch.Tensor, target_rms: float) -> torch.Tensor:
    """Scale (S,) or (B, S) to `target_rms` (per row); silent rows are left as they are."""
    rms = wav.pow(2).mean(dim=-1, keepdim=True).sqrt()
    return torch.where(rms > 1e-6, wav * (target_rms / rms.clamp(min=1e-6)), wav)
