"""The SenseVoice front end: Kaldi-style log-mel filterbank, low-frame-rate stacking, global CMVN.

    wav (S,) 16 kHz in [-1, 1] --x 32768--> frames of 25 ms every 10 ms (snip edges) --DC removal, pre-emphasis
    0.97, Hamming window, |FFT 512|^2, 80 triangular mel bins (20 Hz .. Nyquist), log--> (T, 80)
    --LFR m=7, n=6: frame i = frames [6i-3, 6i+4) stacked (edges repeat the first / last frame)--> (ceil(T/6), 560)
    --CMVN: (x + shift) * scale, from a Kaldi-nnet `am.mvn` (<AddShift>, <Rescale>)--> (ceil(T/6), 560)

So one stacked frame covers 60 ms: about 16.7 frames per second. Written from the published front-end
description (Kaldi's fbank, FunASR's WavFrontend options); no code of either is used.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

_EPS = torch.finfo(torch.float32).eps


@dataclass(frozen=True)
class FrontendConfig:
    """Options of the front end (the `frontend_conf` block of a SenseVoice `config.yaml`)."""

    fs: int = 16000
    n_mels: int = 80
    frame_length: float = 25.0  # ms
    frame_shift: float = 10.0  # ms
    lfr_m: int = 7
    lfr_n: int = 6
    window: str = "hamming"
    preemphasis: float = 0.97
    low_freq: float = 20.0

    @property
    def feature_dim(self) -> int:
        return self.n_mels * self.lfr_m

    @property
    def frame_rate(self) -> float:
        """Stacked frames per second."""
        return 1000.0 / (self.frame_shift * self.lfr_n)

    def num_fbank_frames(self, num_samples: int) -> int:
        win, hop = self._win_hop()
        return 0 if num_samples < win else 1 + (num_samples - win) // hop

    def num_frames(self, num_samples: int) -> int:
        """Stacked frames of a waveform of `num_samples` samples."""
        return math.ceil(self.num_fbank_frames(num_samples) / self.lfr_n)

    def _win_hop(self) -> tuple[int, int]:
        return int(self.fs * self.frame_length / 1000), int(self.fs * self.frame_shift / 1000)


def _mel(f: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log1p(f / 700.0)


def mel_banks(n_mels: int, n_fft: int, fs: int, low_freq: float, high_freq: float = 0.0) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters, equally spaced on Kaldi's mel scale; the Nyquist bin is 0."""
    high = fs / 2 + high_freq if high_freq <= 0 else high_freq
    lo, hi = _mel(torch.tensor(low_freq, dtype=torch.float64)), _mel(torch.tensor(high, dtype=torch.float64))
    delta = (hi - lo) / (n_mels + 1)
    edges = lo + delta * torch.arange(n_mels + 2, dtype=torch.float64)  # (n_mels + 2,)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    freqs = _mel(fs / n_fft * torch.arange(n_fft // 2, dtype=torch.float64))[None, :]  # (1, n_fft / 2)
    up, down = (freqs - left) / (centre - left), (right - freqs) / (right - centre)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return torch.cat([banks, torch.zeros(n_mels, 1, dtype=torch.float64)], dim=1).float()


def fbank(wav: torch.Tensor, cfg: FrontendConfig = FrontendConfig()) -> torch.Tensor:
    """wav (S,) float in [-1, 1] at `cfg.fs` -> log-mel features (T, n_mels) float32 (dither off)."""
    if wav.dim() != 1:
        raise ValueError(f"fbank expects a mono waveform (S,), got shape {tuple(wav.shape)}")
    win, hop = cfg._win_hop()
    x = wav.float() * 32768.0
    T = cfg.num_fbank_frames(x.numel())
    if T == 0:
        return torch.zeros(0, cfg.n_mels)
    frames = x.unfold(0, win, hop)[:T].double()  # (T, win)
    frames = frames - frames.mean(dim=1, keepdim=True)
    prev = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = frames - cfg.preemphasis * prev
    if cfg.window == "hamming":
        n = torch.arange(win, dtype=torch.float64)
        window = 0.54 - 0.46 * torch.cos(2 * math.pi * n / (win - 1))
    elif cfg.window == "hanning":
        window = torch.hann_window(win, periodic=False, dtype=torch.float64)
    else:
        raise ValueError(f"unsupported window {cfg.window!r} (hamming or hanning)")
    n_fft = 1 << (win - 1).bit_length()
    spec = torch.fft.rfft(frames * window, n=n_fft).abs().pow(2)  # (T, n_fft / 2 + 1)
    mel = spec.float() @ mel_banks(cfg.n_mels, n_fft, cfg.fs, cfg.low_freq).T  # (T, n_mels)
    return torch.log(mel.clamp(min=_EPS))


def stack_lfr(feats: torch.Tensor, m: int = 7, n: int = 6) -> torch.Tensor:
    """Low-frame-rate stacking: (T, F) -> (ceil(T / n), m * F). Frame i stacks input frames 6i - (m-1)//2 ..
    on, the first frame repeated before the start and the last one after the end."""
    T, F = feats.shape
    if T == 0:
        return feats.new_zeros(0, m * F)
    out_len = math.ceil(T / n)
    left = (m - 1) // 2
    idx = torch.arange(out_len)[:, None] * n + torch.arange(m)[None, :] - left  # (out_len, m)
    idx = idx.clamp(0, T - 1)
    return feats[idx].reshape(out_len, m * F)


class CMVN:
    """Global mean / variance normalisation `(x + shift) * scale` (one value per feature dimension)."""

    def __init__(self, shift: torch.Tensor, scale: torch.Tensor) -> None:
        if shift.shape != scale.shape or shift.dim() != 1:
            raise ValueError(f"CMVN shift and scale must be equal 1-D vectors, got {tuple(shift.shape)} / "
                             f"{tuple(scale.shape)}")
        self.shift, self.scale = shift.float(), scale.float()

    @classmethod
    def identity(cls, dim: int) -> CMVN:
        return cls(torch.zeros(dim), torch.ones(dim))

    @classmethod
    def read(cls, path: str | Path) -> CMVN:
        """Parse a Kaldi-nnet text file (`am.mvn`): the vectors after `<AddShift>` and `<Rescale>`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"CMVN file {str(path)!r} does not exist (am.mvn of a SenseVoice directory)")
        text = path.read_text()

        def vector(tag: str) -> torch.Tensor:
            m = re.search(re.escape(tag) + r"[^\[]*\[([^\]]*)\]", text)
            if m is None:
                raise ValueError(f"{path}: no {tag} vector (expected a Kaldi nnet with <AddShift> and <Rescale>)")
            return torch.tensor([float(v) for v in m.group(1).split()])

        return cls(vector("<AddShift>"), vector("<Rescale>"))

    def write(self, path: str | Path) -> None:
        d = self.shift.numel()
        fmt = lambda v: " ".join(f"{float(x):.8g}" for x in v)  # noqa: E731
        Path(path).write_text(
            f"<Nnet>\n<Splice> {d} {d}\n[ 0 ]\n<AddShift> {d} {d}\n<LearnRateCoef> 0 [ {fmt(self.shift)} ]\n"
            f"<Rescale> {d} {d}\n<LearnRateCoef> 0 [ {fmt(self.scale)} ]\n</Nnet>\n")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.shift.numel():
            raise ValueError(f"CMVN of {self.shift.numel()} dims applied to features of {x.shape[-1]}")
        return (x + self.shift.to(x)) * self.scale.to(x)


def frontend(wav: torch.Tensor, cfg: FrontendConfig, cmvn: CMVN) -> torch.Tensor:
    """wav (S,) -> normalised stacked features (ceil(T / lfr_n), n_mels * lfr_m)."""
    return cmvn(stack_lfr(fbank(wav, cfg), cfg.lfr_m, cfg.lfr_n))
