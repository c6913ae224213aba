"""The GLM-4-Voice speech tokenizer's network: a Whisper encoder cut at a vector quantiser (Whisper-VQ).

Our own implementation of the published architecture, loading the `glm-4-voice-tokenizer` directory's
`config.json` (a WhisperConfig plus the VQ fields) and safetensors weights with their parameter names:

    log-mel (B, 128, F) --conv1 (k3, causal if encoder_causal_convolution) + GELU
                        --conv2 (k3, stride 2) + GELU --> (B, F/2, D) + embed_positions[:F/2]
        --layers[0 .. quantize_position-1] (pre-LN Whisper blocks; attention: block-causal in blocks of
          quantize_causal_block_size frames, plain causal for causal layers, else a padding mask)
          after layer pooling_position: pad to a multiple of k, avg/max pool by k (25 Hz -> 12.5 Hz with k=4),
          mask[:, ::k], block size // k
        --after layer quantize_position: nearest codebook row (squared L2) --> ids (B, F/8)

The layers past the quantisation position, the final layer norm and the Whisper decoder (in a full training
checkpoint) never influence the ids: they are not built and not read. (The reference then adds
`embed_positions2` to the quantised vectors for those later layers; it is loaded and shape-checked so that a
checkpoint of the wrong geometry is refused, but it cannot change an id.)

Weight names: the published `model.safetensors` is a WhisperVQEncoder saved on its own (its config.json says
`architectures: ["WhisperVQEncoder"]`, `quantize_encoder_only: true`), so it holds bare names (`conv1.weight`,
`layers.<i>.*` for i < quantize_position, `codebook.weight`, `embed_positions2.weight`, the EMA buffers
`ema_count` / `ema_weight`); a full WhisperVQForConditionalGeneration checkpoint holds `model.encoder.<name>`
plus the decoder. Both layouts load; tensors the encoder does not read are ignored.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn
from transformers.activations import ACT2FN

ENCODER_PREFIX = "model.encoder."


@dataclasses.dataclass(frozen=True)
class WhisperVQConfig:
    """The `config.json` fields the encoder reads (names as published; other fields are ignored)."""

    d_model: int = 1280
    encoder_attention_heads: int = 20
    encoder_ffn_dim: int = 5120
    encoder_layers: int = 32
    num_mel_bins: int = 128
    max_source_positions: int = 1500
    activation_function: str = "gelu"
    pooling_kernel_size: int | None = 4
    pooling_type: str = "avg"
    pooling_position: int = 16
    quantize_vocab_size: int = 16384
    quantize_position: int = 16
    quantize_causal_block_size: int | None = 200
    quantize_causal_encoder: bool = False
    quantize_encoder_only: bool = True
    encoder_causal_attention: bool = False
    encoder_causal_convolution: bool = True

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config.json") -> WhisperVQConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in raw.items() if k in names})
        cfg.validate(source)
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> WhisperVQConfig:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: unreadable config ({err})") from err
        return cls.from_dict(raw, str(path))

    def validate(self, source: str) -> None:
        def bad(msg: str) -> ValueError:
            return ValueError(f"{source}: {msg} (not a GLM-4-Voice tokenizer config?)")

        if not self.quantize_vocab_size:
            raise bad("quantize_vocab_size is missing: the encoder has no quantiser")
        if not 1 <= self.quantize_position <= self.encoder_layers:
            raise bad(f"quantize_position={self.quantize_position} outside 1..encoder_layers={self.encoder_layers}")
        if self.pooling_kernel_size:
            if self.pooling_type not in ("avg", "max"):
                raise bad(f"pooling_type={self.pooling_type!r} (expected 'avg' or 'max')")
            if not 1 <= self.pooling_position <= self.quantize_position:
                raise bad(f"pooling_position={self.pooling_position} must lie in 1..quantize_position="
                          f"{self.quantize_position} (pooling after the quantiser never changes the ids)")
        if self.d_model % self.encoder_attention_heads:
            raise bad(f"d_model={self.d_model} is not a multiple of encoder_attention_heads")

    @property
    def causal_layers(self) -> bool:
        """Layers before the quantiser attend causally without a mask (the reference's `is_causal` layers)."""
        return bool(self.encoder_causal_attention or self.quantize_causal_encoder)

    @property
    def pool(self) -> int:
        return int(self.pooling_kernel_size or 1)

    @property
    def frames_per_token(self) -> int:
        """Mel frames (10 ms each) per output id: conv2's stride 2 times the pooling kernel."""
        return 2 * self.pool


class CausalConv1d(nn.Conv1d):
    """A Conv1d padded on the left only, by dilation * (kernel - 1): output t sees inputs <= t."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.dilation[0] * (self.kernel_size[0] - 1), 0)))


def _conv(causal: bool, c_in: int, c_out: int, stride: int) -> nn.Conv1d:
    return CausalConv1d(c_in, c_out, 3, stride=stride) if causal else nn.Conv1d(c_in, c_out, 3, stride, padding=1)


class WhisperAttention(nn.Module):
    """Whisper self-attention (no bias on k_proj), on SDPA with an additive bias."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None, causal: bool) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = (p(x).view(B, T, self.heads, D // self.heads).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))  # (B, h, T, d)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=causal and bias is None)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, D))


class WhisperEncoderLayer(nn.Module):
    """Pre-LN block: x + attn(LN(x)), then x + fc2(act(fc1(LN(x))))."""

    def __init__(self, cfg: WhisperVQConfig):
        super().__init__()
        self.self_attn = WhisperAttention(cfg.d_model, cfg.encoder_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.d_model)
        self.fc1 = nn.Linear(cfg.d_model, cfg.encoder_ffn_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_dim, cfg.d_model)
        self.final_layer_norm = nn.LayerNorm(cfg.d_model)
        self.act = ACT2FN[cfg.activation_function]

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None, causal: bool) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x), bias, causal)
        return x + self.fc2(self.act(self.fc1(self.final_layer_norm(x))))


def attention_bias(mask: torch.Tensor, block_size: int | None, dtype: torch.dtype) -> torch.Tensor:
    """mask (B, T) of 1 = real frame -> additive bias (B, 1, T, T).

    block_size: query i sees key j when j <= i or both lie in the same block of `block_size` frames (counted
    from frame 0), and key j is real. None: every real key (a padding mask)."""
    B, T = mask.shape
    keys = mask.bool()[:, None, None, :]  # (B, 1, 1, T)
    if block_size is None:
        allowed = keys.expand(B, 1, T, T)
    else:
        i = torch.arange(T, device=mask.device)
        grid = (i[None, :] <= i[:, None]) | (i[None, :] // block_size == i[:, None] // block_size)  # (T, T)
        allowed = grid[None, None] & keys
    bias = torch.zeros(allowed.shape, dtype=dtype, device=mask.device)
    return bias.masked_fill_(~allowed, torch.finfo(dtype).min)


class WhisperVQEncoder(nn.Module):
    """log-mel + frame mask -> ids and their mask at 1 / (20 ms * pooling_kernel_size) (see the module doc)."""

    def __init__(self, cfg: WhisperVQConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.d_model
        self.conv1 = _conv(cfg.encoder_causal_convolution, cfg.num_mel_bins, D, 1)
        self.conv2 = _conv(cfg.encoder_causal_convolution, D, D, 2)
        self.embed_positions = nn.Embedding(cfg.max_source_positions, D)
        self.layers = nn.ModuleList(WhisperEncoderLayer(cfg) for _ in range(cfg.quantize_position))
        self.codebook = nn.Embedding(cfg.quantize_vocab_size, D)
        self.embed_positions2 = nn.Embedding(math.ceil(cfg.max_source_positions / cfg.pool), D)

    def _bias(self, mask: torch.Tensor, block: int | None, dtype: torch.dtype) -> torch.Tensor | None:
        if self.cfg.causal_layers:
            return None  # the reference passes no mask to causal layers: SDPA's causal mask alone
        return attention_bias(mask, block, dtype)

    @torch.no_grad()
    def forward(self, features: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, num_mel_bins, F), frame_mask (B, F) -> ids (B, N) long, mask (B, N) bool."""
        cfg = self.cfg
        if features.shape[1] != cfg.num_mel_bins:
            raise ValueError(f"features have {features.shape[1]} mel bins, the encoder expects {cfg.num_mel_bins}")
        x = F.gelu(self.conv1(features.to(self.conv1.weight.dtype)))
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (B, F/2, D)
        T = x.shape[1]
        if T > cfg.max_source_positions:
            raise ValueError(f"{features.shape[-1]} mel frames exceed the encoder's {cfg.max_source_positions} "
                             "positions (30 s): cut the audio into segments first")
        x = x + self.embed_positions.weight[:T]
        mask = frame_mask[:, ::2][:, :T]  # (B, T)
        block = cfg.quantize_causal_block_size
        bias = self._bias(mask, block, x.dtype)
        causal = cfg.causal_layers
        for index, layer in enumerate(self.layers):
            x = layer(x, bias, causal)
            if cfg.pooling_kernel_size and index + 1 == cfg.pooling_position:
                k = cfg.pool
                h = F.pad(x.transpose(1, 2), (0, (-x.shape[1]) % k))  # (B, D, T') with T' % k == 0
                h = F.avg_pool1d(h, k) if cfg.pooling_type == "avg" else F.max_pool1d(h, k)
                x = h.transpose(1, 2)  # (B, T'/k, D)
                mask = mask[:, ::k]
                block = None if block is None else block // k
                bias = self._bias(mask, block, x.dtype)
        return self.nearest(x), mask.bool()

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N) index of the nearest codebook row (squared Euclidean distance)."""
        codebook = self.codebook.weight
        flat = x.reshape(-1, x.shape[-1])
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.t() + codebook.pow(2).sum(1)[None]
        return dist.argmin(1).view(x.shape[:2])


def required_names(cfg: WhisperVQConfig) -> list[str]:
    """The parameter names (without the `model.encoder.` prefix) the encoder reads, in module order."""
    with torch.device("meta"):
        return [n for n, _ in WhisperVQEncoder(cfg).named_parameters()]


def load_whisper_vq(path: str | Path, dtype: torch.dtype = torch.float32,
                    device: str | torch.device = "cpu") -> WhisperVQEncoder:
    """Read `config.json` + `*.safetensors` of a tokenizer directory; only the tensors the encoder needs are read.

    Missing config or weights, a missing tensor or one of the wrong shape: a ValueError / FileNotFoundError
    that names it."""
    path = Path(path).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json (expected the glm-4-voice-tokenizer directory)")
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{path}: no *.safetensors weights (expected model.safetensors of "
                                "glm-4-voice-tokenizer)")
    cfg = WhisperVQConfig.load(path / "config.json")
    with torch.device("meta"):
        model = WhisperVQEncoder(cfg)
    expected = {n: p.shape for n, p in model.named_parameters()}
    where: dict[str, tuple[Path, str]] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                name = key[len(ENCODER_PREFIX):] if key.startswith(ENCODER_PREFIX) else key
                if name in expected and (name not in where or key.startswith(ENCODER_PREFIX)):
                    where[name] = (file, key)
    missing = [n for n in expected if n not in where]
    if missing:
        prefix = ENCODER_PREFIX if any(key.startswith(ENCODER_PREFIX) for _, key in where.values()) else ""
        shown = ", ".join(prefix + n for n in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{path}: {len(missing)} encoder tensors missing from the safetensors ({shown}); "
                         f"config.json asks for quantize_position={cfg.quantize_position} layers")
    state: dict[str, torch.Tensor] = {}
    by_file: dict[Path, list[tuple[str, str]]] = {}
    for name, (file, key) in where.items():
        by_file.setdefault(file, []).append((name, key))
    for file, items in by_file.items():
        with safe_open(str(file), framework="pt") as f:
            for name, key in items:
                t = f.get_tensor(key)
                if tuple(t.shape) != tuple(expected[name]):
                    raise ValueError(f"{file}: {key} has shape {tuple(t.shape)}, config.json implies "
                                     f"{tuple(expected[name])}")
                state[name] = t.to(dtype=dtype, device=device)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
