"""SenseVoice-Small as a continuous audio encoder for the Plus variants (method spec, section 1).

    wav --fbank.frontend--> (T, 560) stacked features (60 ms each)
        --prepend 4 query embeddings (language "auto", event, emotion, text norm "woitn") --> (4 + T, 560)
        --x sqrt(d), sinusoidal positions--> encoders0 (560 -> d, 1 SAN-M layer) -> encoders (num_blocks - 1)
        -> after_norm -> tp_encoders (tp_blocks) -> tp_norm --> (4 + T, d), d = 512 for SenseVoice-Small

A SAN-M layer is pre-norm self-attention whose value path also feeds a depthwise 1-D convolution (FSMN memory,
kernel 11), then a ReLU feed-forward; the first layer changes the width and has no residual around attention.

A local SenseVoice directory (as published) holds `config.yaml` (`encoder_conf`, `frontend_conf`), `model.pt` (a
state dict with the published parameter names: `embed.weight`, `encoder.encoders0.0.self_attn.linear_q_k_v.weight`,
... ; the CTC head `ctc.*` is not needed and is ignored) and `am.mvn` (CMVN). `load_sensevoice(dir)` builds the
encoder from it; every missing file or parameter is named in the error. Written from the published architecture
description; no code of the original is used.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from vita_audio.audio.encoders.base import ContinuousAudioEncoder
from vita_audio.audio.encoders.fbank import CMVN, FrontendConfig, frontend
from vita_audio.audio.io import check_audio, resample

log = logging.getLogger(__name__)

CONFIG_FILE, WEIGHTS_FILE, CMVN_FILE = "config.yaml", "model.pt", "am.mvn"
NUM_QUERIES = 4
# rows of `embed` used as the 4 query frames at inference: language "auto", event, emotion, text norm "woitn"
QUERY_ROWS = (0, 1, 2, 15)
EMBED_ROWS = 16  # 7 + 7 languages + 2 text-norm styles


@dataclass(frozen=True)
class EncoderConfig:
    """The `encoder_conf` block of a SenseVoice `config.yaml` (SenseVoice-Small's values as defaults)."""

    output_size: int = 512
    attention_heads: int = 4
    linear_units: int = 2048
    num_blocks: int = 50
    tp_blocks: int = 20
    kernel_size: int = 11
    sanm_shfit: int = 0
    normalize_before: bool = True
    extra: dict = field(default_factory=dict, compare=False, hash=False)  # other keys, kept for export


class SANMAttention(nn.Module):
    """Multi-head self-attention + FSMN memory over the values (depthwise conv, kernel `kernel_size`)."""

    def __init__(self, in_dim: int, dim: int, heads: int, kernel_size: int, shift: int = 0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not a multiple of {heads} heads")
        self.heads, self.d_k = heads, dim // heads
        self.linear_q_k_v = nn.Linear(in_dim, 3 * dim)
        self.linear_out = nn.Linear(dim, dim)
        self.fsmn_block = nn.Conv1d(dim, dim, kernel_size, groups=dim, bias=False)
        left = (kernel_size - 1) // 2 + max(shift, 0)
        self.pad = (left, kernel_size - 1 - left)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, in_dim), mask (B, T) bool (True = real frame) -> (B, T, dim)."""
        B, T, _ = x.shape
        q, k, v = self.linear_q_k_v(x).split(self.heads * self.d_k, dim=-1)  # (B, T, dim) each
        m = mask[:, :, None].to(v.dtype)
        mem = nn.functional.pad((v * m).transpose(1, 2), self.pad)  # (B, dim, T + k - 1)
        mem = (self.fsmn_block(mem).transpose(1, 2) + v * m) * m  # (B, T, dim)
        q, k, v = (t.reshape(B, T, self.heads, self.d_k).transpose(1, 2) for t in (q, k, v))  # (B, h, T, d_k)
        att = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        att = att.masked_fill(~mask[:, None, :, None], 0.0)
        return self.linear_out(att.transpose(1, 2).reshape(B, T, -1)) + mem


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w_1, self.w_2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(torch.relu(self.w_1(x)))


class SANMLayer(nn.Module):
    def __init__(self, in_dim: int, dim: int, cfg: EncoderConfig) -> None:
        super().__init__()
        self.self_attn = SANMAttention(in_dim, dim, cfg.attention_heads, cfg.kernel_size, cfg.sanm_shfit)
        self.feed_forward = FeedForward(dim, cfg.linear_units)
        self.norm1, self.norm2 = nn.LayerNorm(in_dim), nn.LayerNorm(dim)
        self.residual = in_dim == dim
        self.pre_norm = cfg.normalize_before

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x) if self.pre_norm else x
        h = self.self_attn(h, mask)
        x = x + h if self.residual else h
        if not self.pre_norm:
            x = self.norm1(x)
        h = self.norm2(x) if self.pre_norm else x
        x = x + self.feed_forward(h)
        return x if self.pre_norm else self.norm2(x)


class SANMEncoder(nn.Module):
    """`encoder.*` of SenseVoice-Small."""

    def __init__(self, in_dim: int, cfg: EncoderConfig) -> None:
        super().__init__()
        d = cfg.output_size
        self.output_size = d
        self.encoders0 = nn.ModuleList([SANMLayer(in_dim, d, cfg)])
        self.encoders = nn.ModuleList([SANMLayer(d, d, cfg) for _ in range(cfg.num_blocks - 1)])
        self.after_norm = nn.LayerNorm(d)
        self.tp_encoders = nn.ModuleList([SANMLayer(d, d, cfg) for _ in range(cfg.tp_blocks)])
        self.tp_norm = nn.LayerNorm(d)

    @staticmethod
    def positions(T: int, dim: int, device, dtype) -> torch.Tensor:
        """(T, dim) sinusoids of positions 1..T: [sin | cos], timescales 10000^(-i / (dim/2 - 1))."""
        pos = torch.arange(1, T + 1, device=device, dtype=torch.float32)[:, None]
        inc = math.log(10000.0) / (dim / 2 - 1)
        inv = torch.exp(-inc * torch.arange(dim // 2, device=device, dtype=torch.float32))[None, :]
        return torch.cat([torch.sin(pos * inv), torch.cos(pos * inv)], dim=1).to(dtype)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, in_dim), mask (B, T) -> (B, T, d)."""
        x = x * self.output_size**0.5
        x = x + self.positions(x.shape[1], x.shape[2], x.device, x.dtype)
        for layer in (*self.encoders0, *self.encoders):
            x = layer(x, mask)
        x = self.after_norm(x)
        for layer in self.tp_encoders:
            x = layer(x, mask)
        return self.tp_norm(x)


class SenseVoiceEncoder(nn.Module, ContinuousAudioEncoder):
    """SenseVoice-Small's encoder with its front end: waveform -> (4 + T, d) frames. Always frozen (eval mode,
    no gradients); the front end's CMVN is a non-persistent buffer (it lives in `am.mvn`, not in the weights).

    Args:
        encoder: the `encoder_conf` (a dict or an `EncoderConfig`).
        frontend_conf: the `frontend_conf` (a dict or a `FrontendConfig`).
        cmvn: the CMVN of the stacked features (None = identity).
        name: a label for the identity string (e.g. the directory name).
    """

    num_queries = NUM_QUERIES

    def __init__(self, encoder: EncoderConfig | dict | None = None, frontend_conf: FrontendConfig | dict | None = None,
                 cmvn: CMVN | None = None, name: str = "sensevoice") -> None:
        super().__init__()
        self.enc_cfg = encoder if isinstance(encoder, EncoderConfig) else _encoder_config(encoder or {})
        fe = frontend_conf
        self.fe_cfg = fe if isinstance(fe, FrontendConfig) else _frontend_config(fe or {})
        in_dim = self.fe_cfg.feature_dim
        self.embed = nn.Embedding(EMBED_ROWS, in_dim)
        self.encoder = SANMEncoder(in_dim, self.enc_cfg)
        cmvn = cmvn or CMVN.identity(in_dim)
        if cmvn.shift.numel() != in_dim:
            raise ValueError(f"CMVN has {cmvn.shift.numel()} dims, the stacked features have {in_dim}")
        self.register_buffer("cmvn_shift", cmvn.shift.clone(), persistent=False)
        self.register_buffer("cmvn_scale", cmvn.scale.clone(), persistent=False)
        self.register_buffer("query_rows", torch.tensor(QUERY_ROWS), persistent=False)
        self.label = name
        self.requires_grad_(False)
        self.eval()

    # -- ContinuousAudioEncoder --------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.enc_cfg.output_size

    @property
    def sample_rate(self) -> int:
        return self.fe_cfg.fs

    @property
    def frame_rate(self) -> float:
        return self.fe_cfg.frame_rate

    @property
    def identity(self) -> str:
        """Name + a digest of the config, CMVN and weights (a cache key: it changes whenever the features would)."""
        if getattr(self, "_identity", None) is None:
            h = hashlib.blake2b(digest_size=8)
            h.update(repr((asdict(self.enc_cfg) | {"extra": None}, asdict(self.fe_cfg))).encode())
            for t in (self.cmvn_shift, self.cmvn_scale, *(p for _, p in sorted(self.state_dict().items()))):
                h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
            self._identity = f"{self.label}-{h.hexdigest()}"
        return self._identity

    def train(self, mode: bool = True) -> SenseVoiceEncoder:
        """Frozen in every stage: always in eval mode."""
        return super().train(False)

    def num_frames(self, num_samples: int) -> int:
        return self.num_queries + self.fe_cfg.num_frames(num_samples)

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (S,) at `sample_rate` -> normalised stacked features (T, 560)."""
        return frontend(wav.float().cpu(), self.fe_cfg, CMVN(self.cmvn_shift.cpu(), self.cmvn_scale.cpu()))

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, T, 560) stacked features, lengths (B,) -> ((B, 4 + T, d), lengths + 4)."""
        B, T, _ = feats.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=feats.device)
        w = self.embed.weight
        queries = self.embed(self.query_rows.to(w.device))[None].expand(B, -1, -1)  # (B, 4, 560)
        x = torch.cat([queries.to(feats.dtype), feats.to(w.dtype)], dim=1)  # (B, 4 + T, 560)
        lengths = lengths.to(x.device) + self.num_queries
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]  # (B, 4 + T)
        return self.encoder(x, mask), lengths

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """wav (S,) mono at `sample_rate` -> frames (4 + T, d) float32 on the CPU."""
        wav = check_audio(wav, sample_rate)
        if sample_rate != self.sample_rate:
            wav = resample(wav, sample_rate, self.sample_rate)
        w = self.embed.weight
        feats = self.features(wav).to(device=w.device, dtype=w.dtype)[None]  # (1, T, 560)
        out, _ = self(feats)
        return out[0].float().cpu()

    # -- files -------------------------------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        """The `config.yaml` of this encoder (SenseVoice layout)."""
        enc = {k: v for k, v in asdict(self.enc_cfg).items() if k != "extra"} | dict(self.enc_cfg.extra)
        fe = asdict(self.fe_cfg)
        fe["cmvn_file"] = CMVN_FILE
        return {"encoder": "SenseVoiceEncoderSmall", "encoder_conf": enc, "model": "SenseVoiceSmall",
                "frontend": "WavFrontend", "frontend_conf": fe, "input_size": self.fe_cfg.feature_dim}

    def write_config_files(self, path: str | Path) -> None:
        """config.yaml and am.mvn of this encoder into directory `path` (weights aside)."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_FILE).write_text(yaml.safe_dump(self.config_dict(), sort_keys=False))
        self.write_cmvn(out / CMVN_FILE)

    def save(self, path: str | Path, extra_state: dict[str, torch.Tensor] | None = None) -> Path:
        """Write a SenseVoice-format directory (config.yaml, model.pt, am.mvn) that `load_sensevoice` reads."""
        self.write_config_files(path)
        state = {k: v.detach().cpu().clone() for k, v in self.state_dict().items()} | dict(extra_state or {})
        torch.save(state, Path(path) / WEIGHTS_FILE)
        return Path(path)

    def write_cmvn(self, path: str | Path) -> None:
        CMVN(self.cmvn_shift.cpu(), self.cmvn_scale.cpu()).write(path)


_ENCODER_FIELDS = ("output_size", "attention_heads", "linear_units", "num_blocks", "tp_blocks", "kernel_size",
                   "sanm_shfit", "normalize_before")
_FRONTEND_FIELDS = ("fs", "n_mels", "frame_length", "frame_shift", "lfr_m", "lfr_n", "window")


def _encoder_config(d: dict) -> EncoderConfig:
    known = {k: d[k] for k in _ENCODER_FIELDS if k in d}
    return EncoderConfig(**known, extra={k: v for k, v in d.items() if k not in _ENCODER_FIELDS})


def _frontend_config(d: dict) -> FrontendConfig:
    return FrontendConfig(**{k: d[k] for k in _FRONTEND_FIELDS if k in d})


def read_encoder_files(path: str | Path) -> tuple[dict, CMVN]:
    """(config.yaml as a dict, CMVN) of a SenseVoice directory; errors name the missing file."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"SenseVoice directory {str(path)!r} does not exist: download SenseVoice-Small "
                                "yourself and point the encoder at the local directory (nothing is fetched)")
    cfg_file = path / CONFIG_FILE
    if not cfg_file.is_file():
        raise FileNotFoundError(f"SenseVoice directory {str(path)!r} has no {CONFIG_FILE} (encoder_conf, "
                                "frontend_conf)")
    cfg = yaml.safe_load(cfg_file.read_text()) or {}
    if not isinstance(cfg.get("encoder_conf"), dict):
        raise ValueError(f"{cfg_file}: no encoder_conf mapping (not a SenseVoice config)")
    fe = cfg.get("frontend_conf") or {}
    cmvn_name = fe.get("cmvn_file") or CMVN_FILE
    cmvn_file = path / Path(str(cmvn_name)).name
    if not cmvn_file.is_file():
        raise FileNotFoundError(f"SenseVoice directory {str(path)!r} has no {cmvn_file.name} (the CMVN of its "
                                "features)")
    return cfg, CMVN.read(cmvn_file)


def build_from_config(cfg: dict, cmvn: CMVN, name: str) -> SenseVoiceEncoder:
    return SenseVoiceEncoder(cfg["encoder_conf"], cfg.get("frontend_conf") or {}, cmvn, name)


def load_sensevoice(path: str | Path, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32) -> SenseVoiceEncoder:
    """Build SenseVoice-Small from a local directory (config.yaml, model.pt, am.mvn), strictly: every parameter
    of the encoder must be in model.pt with its shape (`ctc.*` and other extra keys are ignored, logged)."""
    path = Path(path).expanduser()
    cfg, cmvn = read_encoder_files(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"SenseVoice directory {str(path)!r} has no {WEIGHTS_FILE} (the weights)")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), dict):
            state = state[key]
    model = build_from_config(cfg, cmvn, path.name or "sensevoice")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise KeyError(f"{weights}: {len(missing)} encoder parameter(s) missing, e.g. {missing[:5]} (is it a "
                       "SenseVoice-Small checkpoint matching its config.yaml?)")
    bad = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        k = bad[0]
        raise ValueError(f"{weights}: {k!r} has shape {tuple(state[k].shape)}, config.yaml implies "
                         f"{tuple(own[k].shape)}")
    ignored = sorted(k for k in state if k not in own)
    if ignored:
        log.info("SenseVoice %s: %d tensors not used by the encoder (e.g. %s)", path, len(ignored), ignored[:3])
    model.load_state_dict({k: state[k] for k in own})
    return model.to(device=device, dtype=dtype)
