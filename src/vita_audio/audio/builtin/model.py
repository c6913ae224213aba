"""The built-in codec network: log-mel frames -> codes -> log-magnitude frames.

    wav --Features--> log-mel (B, F, M) --stack frames_per_token--> (B, N, F/N*M)
        --Encoder (non-causal convs, token rate)--> latents (B, N, D) --VQ (EMA codebook)--> codes (B, N)
    codes --codebook--> (B, N, D) --Decoder (valid convs: R = dec_blocks tokens of context each side)-->
        log-magnitude (B, (N - 2R) * frames_per_token, n_fft/2+1)

The decoder only uses *valid* convolutions, so the frames of token t depend on tokens t-R .. t+R and nothing
else: decoding a window with R tokens of context on each side gives exactly the offline frames, which is what
makes streaming decode cheap and equal to offline. Utterance edges are padded with R zero vectors ("no token").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vita_audio.audio.builtin.config import CodecConfig
from vita_audio.audio.builtin.ctc import CtcHead


class ResBlock(nn.Module):
    """x + conv1x1(act(conv3(act(x)))); `valid=True` drops one position on each side instead of zero padding."""

    def __init__(self, channels: int, valid: bool):
        super().__init__()
        self.valid = valid
        self.conv = nn.Conv1d(channels, channels, 3, padding=0 if valid else 1)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, L) -> (B, C, L or L-2)
        y = self.mix(F.leaky_relu(self.conv(F.leaky_relu(x, 0.1)), 0.1))
        return (x[..., 1:-1] if self.valid else x) + y


class Encoder(nn.Module):
    """log-mel (B, F, M) -> latents (B, N, D), N = F / frames_per_token."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mel_mean", torch.zeros(cfg.n_mels))
        self.register_buffer("mel_std", torch.ones(cfg.n_mels))
        self.inp = nn.Conv1d(cfg.n_mels * cfg.frames_per_token, cfg.enc_channels, 3, padding=1)
        self.blocks = nn.Sequential(*[ResBlock(cfg.enc_channels, valid=False) for _ in range(cfg.enc_blocks)])
        self.out = nn.Conv1d(cfg.enc_channels, cfg.latent_dim, 1)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        b, f, m = log_mel.shape
        x = (log_mel - self.mel_mean) / self.mel_std
        x = x.reshape(b, f // self.cfg.frames_per_token, self.cfg.frames_per_token * m)  # (B, N, k*M)
        x = self.out(F.leaky_relu(self.blocks(self.inp(x.transpose(1, 2))), 0.1))  # (B, D, N)
        return x.transpose(1, 2)  # (B, N, D)


class VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook with EMA updates (k-means in the limit) and dead-code restarts."""

    def __init__(self, codebook_size: int, dim: int, decay: float = 0.99):
        super().__init__()
        self.decay = decay
        self.register_buffer("codebook", torch.randn(codebook_size, dim) * 0.1)
        self.register_buffer("ema_count", torch.ones(codebook_size))
        self.register_buffer("ema_sum", self.codebook.clone())

    @property
    def size(self) -> int:
        return self.codebook.shape[0]

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """z (..., D) -> codes (...), by squared Euclidean distance."""
        flat = z.reshape(-1, z.shape[-1])  # (P, D)
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.T + self.codebook.pow(2).sum(1)[None]
        return d.argmin(dim=1).reshape(z.shape[:-1])

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.codebook)  # (..., D)

    @torch.no_grad()
    def init_from(self, z: torch.Tensor, generator: torch.Generator) -> None:
        """Codebook := random latents (k-means-style seeding), with a little noise when there are too few."""
        flat = z.reshape(-1, z.shape[-1])
        idx = torch.randint(flat.shape[0], (self.size,), generator=generator)
        noise = torch.randn(self.size, flat.shape[1], generator=generator) * flat.std() * 0.01
        self.codebook.copy_(flat[idx] + noise)
        self.ema_sum.copy_(self.codebook)
        self.ema_count.fill_(1.0)

    @torch.no_grad()
    def update(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        flat, c = z.reshape(-1, z.shape[-1]), codes.reshape(-1)
        onehot_sum = torch.zeros_like(self.ema_sum).index_add_(0, c, flat)
        count = torch.bincount(c, minlength=self.size).float()
        self.ema_count.mul_(self.decay).add_(count, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(onehot_sum, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (n + self.size * 1e-5) * n  # Laplace smoothing
        self.codebook.copy_(self.ema_sum / smoothed[:, None])

    @torch.no_grad()
    def restart_dead(self, z: torch.Tensor, threshold: float, generator: torch.Generator) -> int:
        """Codes whose EMA usage fell below `threshold` take a random current latent; returns how many."""
        dead = (self.ema_count < threshold).nonzero().squeeze(1)
        if dead.numel():
            flat = z.reshape(-1, z.shape[-1])
            pick = flat[torch.randint(flat.shape[0], (dead.numel(),), generator=generator)]
            self.codebook[dead] = pick
            self.ema_sum[dead] = pick
            self.ema_count[dead] = 1.0
        return int(dead.numel())


class Decoder(nn.Module):
    """Code vectors (B, L, D) -> log-magnitude (B, (L - 2R) * frames_per_token, K), R = `context`."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.inp = nn.Conv1d(cfg.latent_dim, cfg.dec_channels, 1)
        self.blocks = nn.Sequential(*[ResBlock(cfg.dec_channels, valid=True) for _ in range(cfg.dec_blocks)])
        self.out = nn.Conv1d(cfg.dec_channels, cfg.frames_per_token * cfg.n_bins, 1)

    @property
    def context(self) -> int:
        """Tokens of context needed on each side of the tokens being decoded."""
        return self.cfg.dec_blocks

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        b = emb.shape[0]
        x = self.out(F.leaky_relu(self.blocks(self.inp(emb.transpose(1, 2))), 0.1))  # (B, k*K, L-2R)
        x = x.transpose(1, 2)  # (B, L-2R, k*K)
        return x.reshape(b, -1, self.cfg.n_bins)  # (B, (L-2R)*k, K)


class CodecModel(nn.Module):
    """Encoder + VQ + decoder (+ the CTC head of a semantic codec). Weights (incl. mel statistics and codebook) are
    one safetensors state dict."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.vq = VectorQuantizer(cfg.codebook_size, cfg.latent_dim)
        self.decoder = Decoder(cfg)
        self.ctc = CtcHead(cfg) if cfg.kind == "semantic" else None
