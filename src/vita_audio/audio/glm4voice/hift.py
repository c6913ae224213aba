"""GLM-4-Voice decoder, part 2: mel -> 22,050 Hz waveform by HiFT (neural source filter + iSTFT HiFi-GAN, as
in CosyVoice), our own implementation with the published `hift.pt` names.

    mel (B, 80, T) --f0_predictor (5 x weight-normed conv3 + ELU, linear, |.|)--> f0 (B, T) Hz
        --x256 nearest, harmonics 1..9 of f0, running phase, uv = f0 > threshold, noise--> sines (B, S, 9)
        --m_source.l_linear + tanh--> source s (B, 1, S)  (S = 256 T)
    mel --conv_pre--> [leaky ReLU, ups[i] (transposed conv), (+ reflection pad on the last),
                       + source_resblocks[i](source_downs[i](STFT(s))), mean of resblocks] x 2
        --leaky ReLU, conv_post--> log-magnitude (9) + phase (9) --iSTFT (n_fft 16, hop 4)--> clamp(+-0.99)

The source is split out (`f0`, `source`, `generate`) so that the streaming session computes every part once,
in order: the f0 of a frame from a window with enough context, the source sample by sample with the phase
carried over, the generator on mel + source windows with enough context on both sides.

Weight norm is stored as `weight_g` / `weight_v` (torch.nn.utils.weight_norm) and also accepted in the
`parametrizations.weight.original0/1` layout of newer torch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import get_window
from torch import nn


@dataclasses.dataclass(frozen=True)
class HiFTConfig:
    """The `hift:` section of config.yaml (published field names; defaults = the GLM-4-Voice decoder's)."""

    in_channels: int = 80
    base_channels: int = 512
    nb_harmonics: int = 8
    sampling_rate: int = 22050
    nsf_alpha: float = 0.1
    nsf_sigma: float = 0.003
    nsf_voiced_threshold: float = 10.0
    upsample_rates: tuple = (8, 8)
    upsample_kernel_sizes: tuple = (16, 16)
    n_fft: int = 16
    hop_len: int = 4
    resblock_kernel_sizes: tuple = (3, 7, 11)
    resblock_dilation_sizes: tuple = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    source_resblock_kernel_sizes: tuple = (7, 11)
    source_resblock_dilation_sizes: tuple = ((1, 3, 5), (1, 3, 5))
    lrelu_slope: float = 0.1
    audio_limit: float = 0.99
    f0_num_class: int = 1
    f0_in_channels: int = 80
    f0_cond_channels: int = 512

    @classmethod
    def from_yaml(cls, hift: dict[str, Any]) -> HiFTConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        raw = {k: v for k, v in hift.items() if k in names}
        ist = hift.get("istft_params") or {}
        raw.update({k: ist[k] for k in ("n_fft", "hop_len") if k in ist})
        f0 = hift.get("f0_predictor") or {}
        raw.update({f"f0_{k}": f0[k] for k in ("num_class", "in_channels", "cond_channels") if k in f0})
        tup = {k: tuple(tuple(x) if isinstance(x, list) else x for x in raw[k]) for k in raw if isinstance(raw[k], list)}
        raw.update(tup)
        floats = ("nsf_alpha", "nsf_sigma", "nsf_voiced_threshold", "lrelu_slope", "audio_limit")
        raw.update({k: float(raw[k]) for k in floats if k in raw})
        return cls(**raw)

    @property
    def hop(self) -> int:
        """Waveform samples per mel frame: prod(upsample_rates) * hop_len (256)."""
        return int(np.prod(self.upsample_rates)) * self.hop_len


def _wn_weight(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return v * (g / v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1))))


def _split_weight_norm(conv: nn.Module) -> None:
    """Replace conv.weight by the weight_g / weight_v pair of torch's weight_norm (dim 0)."""
    w = conv.weight.detach()
    del conv.weight
    conv.weight_g = nn.Parameter(w.flatten(1).norm(dim=1).view(-1, 1, 1))
    conv.weight_v = nn.Parameter(w.clone())


class WNConv1d(nn.Conv1d):
    """Conv1d with weight normalisation (dim 0) stored as weight_g / weight_v, like torch's weight_norm."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _split_weight_norm(self)

    def forward(self, x):
        return F.conv1d(x, _wn_weight(self.weight_g, self.weight_v), self.bias, self.stride, self.padding,
                        self.dilation, self.groups)


class WNConvTranspose1d(nn.ConvTranspose1d):
    """ConvTranspose1d with the same weight_g / weight_v storage."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _split_weight_norm(self)

    def forward(self, x):
        return F.conv_transpose1d(x, _wn_weight(self.weight_g, self.weight_v), self.bias, self.stride,
                                  self.padding, self.output_padding, self.groups, self.dilation)


class Snake(nn.Module):
    """x + sin^2(alpha x) / alpha, per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels))

    def forward(self, x):
        a = self.alpha[None, :, None]
        return x + torch.sin(x * a).pow(2) / (a + 1e-9)


class ResBlock(nn.Module):
    """For each dilation d: x += conv2(snake(conv1_d(snake(x))))."""

    def __init__(self, ch: int, k: int, dilations):
        super().__init__()
        self.convs1 = nn.ModuleList(WNConv1d(ch, ch, k, 1, dilation=d, padding=d * (k - 1) // 2) for d in dilations)
        self.convs2 = nn.ModuleList(WNConv1d(ch, ch, k, 1, padding=(k - 1) // 2) for _ in dilations)
        self.activations1 = nn.ModuleList(Snake(ch) for _ in dilations)
        self.activations2 = nn.ModuleList(Snake(ch) for _ in dilations)

    def forward(self, x):
        for c1, c2, a1, a2 in zip(self.convs1, self.convs2, self.activations1, self.activations2):
            x = x + c2(a2(c1(a1(x))))
        return x


class F0Predictor(nn.Module):
    def __init__(self, cfg: HiFTConfig):
        super().__init__()
        c, layers = cfg.f0_cond_channels, []
        for i in range(5):
            layers += [WNConv1d(cfg.f0_in_channels if i == 0 else c, c, 3, padding=1), nn.ELU()]
        self.condnet = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, cfg.f0_num_class)

    #: frames of context each side that an f0 value depends on (five k=3 convolutions)
    context = 5

    def forward(self, mel):  # (B, 80, T) -> (B, T)
        return self.classifier(self.condnet(mel).transpose(1, 2)).squeeze(-1).abs()


class _Source(nn.Module):
    def __init__(self, cfg: HiFTConfig):
        super().__init__()
        self.l_linear = nn.Linear(cfg.nb_harmonics + 1, 1)


class HiFTGenerator(nn.Module):
    """mel -> waveform (see the module docstring). Parameter names = the published hift.pt's."""

    def __init__(self, cfg: HiFTConfig):
        super().__init__()
        self.cfg = cfg
        base, n_fft = cfg.base_channels, cfg.n_fft
        self.m_source = _Source(cfg)
        self.conv_pre = WNConv1d(cfg.in_channels, base, 7, 1, padding=3)
        self.ups = nn.ModuleList(WNConvTranspose1d(base // 2 ** i, base // 2 ** (i + 1), k, u, padding=(k - u) // 2)
                                 for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes)))
        down_rates = np.cumprod([1, *cfg.upsample_rates[::-1][:-1]])[::-1]
        self.source_downs, self.source_resblocks = nn.ModuleList(), nn.ModuleList()
        for i, (u, k, d) in enumerate(zip(down_rates, cfg.source_resblock_kernel_sizes,
                                          cfg.source_resblock_dilation_sizes)):
            ch, u = base // 2 ** (i + 1), int(u)
            self.source_downs.append(nn.Conv1d(n_fft + 2, ch, 1, 1) if u == 1
                                     else nn.Conv1d(n_fft + 2, ch, u * 2, u, padding=u // 2))
            self.source_resblocks.append(ResBlock(ch, k, d))
        self.resblocks = nn.ModuleList(
            ResBlock(base // 2 ** (i + 1), k, d) for i in range(len(self.ups))
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes))
        self.conv_post = WNConv1d(base // 2 ** len(self.ups), n_fft + 2, 7, 1, padding=3)
        self.f0_predictor = F0Predictor(cfg)
        self.register_buffer("window", torch.from_numpy(get_window("hann", n_fft, fftbins=True).astype(np.float32)),
                             persistent=False)

    # -- source ----------------------------------------------------------------------------------------------
    def source(self, f0: torch.Tensor, phase: torch.Tensor, offsets: torch.Tensor,
               noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """f0 (B, T) Hz per frame; phase (B, H) in cycles where the previous call stopped; offsets (B, H) the
        random start phases (radians, harmonic 0 at 0); noise (B, 256 T, H) standard normal, None for none
        -> (source (B, 1, 256 T), phase after the last sample)."""
        cfg = self.cfg
        f0s = f0.repeat_interleave(cfg.hop, dim=1)  # (B, S) nearest upsampling
        harm = torch.arange(1, cfg.nb_harmonics + 2, device=f0.device, dtype=torch.float64)
        cycles = phase[:, None, :].double() + torch.cumsum(f0s[:, :, None].double() * harm / cfg.sampling_rate, 1)
        theta = 2 * math.pi * torch.remainder(cycles, 1.0)  # (B, S, H)
        sines = cfg.nsf_alpha * torch.sin(theta.float() + offsets[:, None, :])
        uv = (f0s > cfg.nsf_voiced_threshold).float()[:, :, None]
        noise_amp = uv * cfg.nsf_sigma + (1 - uv) * cfg.nsf_alpha / 3
        excitation = sines * uv
        if noise is not None:
            if noise.shape != sines.shape:
                raise ValueError(f"source noise has shape {tuple(noise.shape)}, expected {tuple(sines.shape)}")
            excitation = excitation + noise.to(sines) * noise_amp
        s = torch.tanh(self.m_source.l_linear(excitation))  # (B, S, 1)
        return s.transpose(1, 2), torch.remainder(cycles[:, -1], 1.0).float()

    def start_phases(self, batch: int, gen: torch.Generator | None) -> torch.Tensor:
        off = (torch.rand(batch, self.cfg.nb_harmonics + 1, generator=gen) * 2 - 1) * math.pi
        off[:, 0] = 0
        return off

    # -- generator -------------------------------------------------------------------------------------------
    def generate(self, mel: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """mel (B, 80, T), source (B, 1, 256 T) -> waveform (B, 256 T)."""
        cfg, n_fft = self.cfg, self.cfg.n_fft
        spec = torch.stft(s[:, 0], n_fft, cfg.hop_len, n_fft, window=self.window, return_complex=True)
        s_stft = torch.cat([spec.real, spec.imag], dim=1)  # (B, n_fft + 2, 64 T + 1)
        x = self.conv_pre(mel)
        nk = len(cfg.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, cfg.lrelu_slope))
            if i == len(self.ups) - 1:
                x = F.pad(x, (1, 0), mode="reflect")
            x = x + self.source_resblocks[i](self.source_downs[i](s_stft))
            x = sum(self.resblocks[i * nk + j](x) for j in range(nk)) / nk
        x = self.conv_post(F.leaky_relu(x))
        mag = torch.exp(x[:, : n_fft // 2 + 1]).clamp(max=1e2)
        ph = torch.sin(x[:, n_fft // 2 + 1:])
        wav = torch.istft(torch.polar(mag, ph), n_fft, cfg.hop_len, n_fft, window=self.window)
        return wav.clamp(-cfg.audio_limit, cfg.audio_limit)

    @torch.no_grad()
    def forward(self, mel: torch.Tensor, offsets: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """Whole-utterance vocoding: mel (B, 80, T), start phases (B, H), source noise (B, 256 T, H) or None
        -> waveform (B, 256 T). f0, source and generator each run once over all the frames."""
        f0 = self.f0_predictor(mel)
        zero = torch.zeros(mel.shape[0], self.cfg.nb_harmonics + 1, device=mel.device)
        s, _ = self.source(f0, zero, offsets.to(mel.device), noise)
        return self.generate(mel, s)


def convert_weight_norm_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`x.parametrizations.weight.original0/1` (newer torch) -> `x.weight_g` / `x.weight_v`."""
    out = {}
    for k, v in state.items():
        k = k.replace(".parametrizations.weight.original0", ".weight_g")
        out[k.replace(".parametrizations.weight.original1", ".weight_v")] = v
    return out
