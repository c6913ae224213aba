"""GLM-4-Voice decoder, part 1: speech tokens -> 80-bin mel by conditional flow matching (CosyVoice's
`MaskedDiffWithXvec` as retrained by GLM-4-Voice), our own implementation with the published `flow.pt` names.

    tokens (1, n) --input_embedding--> (1, n, 512)
        --encoder (BlockConformerEncoder: linear embed + LayerNorm, x * sqrt(d), rel-pos self-attention that
          sees its own block of `block_size` tokens and everything before it, FFN with SiLU; pre-LN)
        --encoder_proj--> (1, n, 80) --length_regulator (interpolate to the mel length, 4 x conv/GroupNorm/Mish,
          1x1 conv)--> mu (1, 80, M)
    mel = CFM(mu, spks = spk_embed_affine_layer(normalise(x-vector)), cond = prompt mel then zeros):
        x0 ~ N(0, 1); Euler over t in 1 - cos(pi/2 * linspace(0, 1, steps + 1)):
        x += dt * ((1 + w) * v(x, mu, t, spks, cond) - w * v(x, 0, t, 0, 0))     (classifier-free guidance)
        v = decoder.estimator (a 1-D U-Net: ResNet blocks + transformer blocks, down / 12 mid / up)

`prompt_tokens` / `prompt_mel` condition the new tokens on what came before (the streaming session's bounded
context); the mel frames of the prompt are generated too and dropped.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _fields(cls, raw: dict[str, Any]) -> dict[str, Any]:
    names = {f.name: f for f in dataclasses.fields(cls)}
    return {k: v for k, v in raw.items() if k in names}


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """The `flow:` section of config.yaml (published field names; defaults = the GLM-4-Voice decoder's)."""

    input_size: int = 512
    output_size: int = 80
    spk_embed_dim: int = 192
    vocab_size: int = 16384
    input_frame_rate: float = 12.5
    # encoder (BlockConformerEncoder)
    enc_output_size: int = 512
    enc_attention_heads: int = 8
    enc_linear_units: int = 2048
    enc_num_blocks: int = 6
    enc_block_size: int = 10
    enc_key_bias: bool = True
    # length_regulator (InterpolateRegulator)
    lr_channels: int = 80
    lr_sampling_ratios: tuple = (1, 1, 1, 1)
    lr_groups: int = 1
    # decoder (ConditionalCFM) and its estimator (ConditionalDecoder)
    sigma_min: float = 1e-6
    t_scheduler: str = "cosine"
    inference_cfg_rate: float = 0.7
    est_in_channels: int = 320
    est_out_channels: int = 80
    est_channels: tuple = (256, 256)
    est_attention_head_dim: int = 64
    est_n_blocks: int = 4
    est_num_mid_blocks: int = 12
    est_num_heads: int = 8

    @classmethod
    def from_yaml(cls, flow: dict[str, Any], source: str = "config.yaml") -> FlowConfig:
        """`flow` = the plain mapping under `flow:` (see yaml_config.plain)."""
        enc, lr = flow.get("encoder") or {}, flow.get("length_regulator") or {}
        dec = flow.get("decoder") or {}
        est, cfm = dec.get("estimator") or {}, dec.get("cfm_params") or {}
        for key, want in (("input_layer", "linear"), ("pos_enc_layer_type", "rel_pos_espnet"),
                          ("selfattention_layer_type", "block_rel_selfattn")):
            if key in enc and enc[key] != want:
                raise ValueError(f"{source}: flow.encoder.{key}={enc[key]!r}; only {want!r} (the GLM-4-Voice "
                                 "decoder's) is implemented")
        for key in ("use_cnn_module", "macaron_style"):
            if enc.get(key):
                raise ValueError(f"{source}: flow.encoder.{key}=True is not part of the GLM-4-Voice decoder")
        if cfm.get("solver", "euler") != "euler":
            raise ValueError(f"{source}: flow.decoder.cfm_params.solver={cfm['solver']!r}; only 'euler' exists")
        raw = dict(_fields(cls, flow))
        raw.update({f"enc_{k}": v for k, v in enc.items() if f"enc_{k}" in {f.name for f in dataclasses.fields(cls)}})
        raw.update({f"lr_{k}": v for k, v in lr.items() if f"lr_{k}" in {f.name for f in dataclasses.fields(cls)}})
        raw.update({f"est_{k}": v for k, v in est.items() if f"est_{k}" in {f.name for f in dataclasses.fields(cls)}})
        raw.update(_fields(cls, cfm))
        cfg = cls(**raw)
        return dataclasses.replace(
            cfg, input_frame_rate=float(cfg.input_frame_rate), sigma_min=float(cfg.sigma_min),
            inference_cfg_rate=float(cfg.inference_cfg_rate), lr_sampling_ratios=tuple(cfg.lr_sampling_ratios),
            est_channels=tuple(int(c) for c in cfg.est_channels))

    def mel_frames(self, tokens: int) -> int:
        """Mel frames (22,050 Hz, hop 256) for the first `tokens` tokens: int(n / rate * 22050 / 256)."""
        return int(tokens / self.input_frame_rate * 22050 / 256)


# -- encoder -------------------------------------------------------------------------------------------------------
def rel_positions(T: int, d: int, device, dtype) -> torch.Tensor:
    """ESPnet relative sinusoids for offsets T-1 .. -(T-1): (1, 2T-1, d), sin at even and cos at odd channels."""
    r = torch.arange(T - 1, -T, -1, device=device, dtype=torch.float32)[:, None]  # (2T-1, 1)
    freq = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * -(math.log(10000.0) / d))
    pe = torch.zeros(2 * T - 1, d, device=device)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(r * freq), torch.cos(r * freq)
    return pe[None].to(dtype)


def block_grid(T: int, block: int, device) -> torch.Tensor:
    """(T, T) bool: query i sees key j when j <= i or both are in the same block of `block` (from 0)."""
    i = torch.arange(T, device=device)
    return (i[None, :] <= i[:, None]) | (i[None, :] // block == i[:, None] // block)


class RelPosBlockAttention(nn.Module):
    """Multi-head attention with Transformer-XL relative positions (pos_bias_u / pos_bias_v, linear_pos)."""

    def __init__(self, heads: int, dim: int, key_bias: bool):
        super().__init__()
        self.h, self.d_k = heads, dim // heads
        self.linear_q, self.linear_v, self.linear_out = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim, bias=key_bias)
        self.linear_pos = nn.Linear(dim, dim, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(heads, self.d_k))

    def forward(self, x: torch.Tensor, pos: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q = self.linear_q(x).view(B, T, self.h, self.d_k)  # (B, T, h, d)
        k = self.linear_k(x).view(B, T, self.h, self.d_k).transpose(1, 2)
        v = self.linear_v(x).view(B, T, self.h, self.d_k).transpose(1, 2)
        p = self.linear_pos(pos).view(1, 2 * T - 1, self.h, self.d_k).transpose(1, 2)  # (1, h, 2T-1, d)
        ac = (q + self.pos_bias_u).transpose(1, 2) @ k.transpose(-2, -1)  # (B, h, T, T)
        bd = (q + self.pos_bias_v).transpose(1, 2) @ p.transpose(-2, -1)  # (B, h, T, 2T-1)
        i = torch.arange(T, device=x.device)
        bd = bd.gather(-1, ((T - 1) - i[:, None] + i[None, :]).expand(B, self.h, T, T))  # offset i - j
        scores = ((ac + bd) / math.sqrt(self.d_k)).masked_fill(~allowed, float("-inf"))
        y = torch.softmax(scores, dim=-1) @ v  # (B, h, T, d)
        return self.linear_out(y.transpose(1, 2).reshape(B, T, D))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w_1, self.w_2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(F.silu(self.w_1(x)))


class ConformerLayer(nn.Module):
    """Pre-LN: x + attn(norm_mha(x)), then x + ffn(norm_ff(x)) (no macaron, no convolution module)."""

    def __init__(self, cfg: FlowConfig):
        super().__init__()
        d = cfg.enc_output_size
        self.self_attn = RelPosBlockAttention(cfg.enc_attention_heads, d, cfg.enc_key_bias)
        self.feed_forward = FeedForward(d, cfg.enc_linear_units)
        self.norm_ff, self.norm_mha = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)

    def forward(self, x, pos, allowed):
        x = x + self.self_attn(self.norm_mha(x), pos, allowed)
        return x + self.feed_forward(self.norm_ff(x))


class _LinearEmbed(nn.Module):
    def __init__(self, d_in: int, d: int):
        super().__init__()
        self.out = nn.Sequential(nn.Linear(d_in, d), nn.LayerNorm(d, eps=1e-5), nn.Dropout(0.0))


class BlockConformerEncoder(nn.Module):
    def __init__(self, cfg: FlowConfig):
        super().__init__()
        self.block_size, self.d = cfg.enc_block_size, cfg.enc_output_size
        self.embed = _LinearEmbed(cfg.input_size, cfg.enc_output_size)
        self.encoders = nn.ModuleList(ConformerLayer(cfg) for _ in range(cfg.enc_num_blocks))
        self.after_norm = nn.LayerNorm(cfg.enc_output_size, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n, input_size) -> (B, n, output_size); blocks counted from position 0 of `x`."""
        T = x.shape[1]
        x = self.embed.out(x) * math.sqrt(self.d)
        pos = rel_positions(T, self.d, x.device, x.dtype)
        allowed = block_grid(T, self.block_size, x.device)[None, None]
        for layer in self.encoders:
            x = layer(x, pos, allowed)
        return self.after_norm(x)


class InterpolateRegulator(nn.Module):
    """Linear interpolation of (B, n, C) to `frames`, then [conv3 + GroupNorm + Mish] x len(ratios) + conv1."""

    def __init__(self, cfg: FlowConfig):
        super().__init__()
        c, layers = cfg.lr_channels, []
        for _ in cfg.lr_sampling_ratios:
            layers += [nn.Conv1d(c, c, 3, 1, 1), nn.GroupNorm(cfg.lr_groups, c), nn.Mish()]
        self.model = nn.Sequential(*layers, nn.Conv1d(c, c, 1, 1))

    def forward(self, h: torch.Tensor, frames: int) -> torch.Tensor:
        x = F.interpolate(h.transpose(1, 2).contiguous(), size=frames, mode="linear")  # (B, C, frames)
        return self.model(x)  # (B, C, frames)


# -- the CFM estimator: a 1-D U-Net -------------------------------------------------------------------------------
class Block1D(nn.Module):
    def __init__(self, dim: int, dim_out: int, groups: int = 8):
        super().__init__()
        self.block = nn.Sequential(nn.Conv1d(dim, dim_out, 3, padding=1), nn.GroupNorm(groups, dim_out), nn.Mish())

    def forward(self, x):
        return self.block(x)


class ResnetBlock1D(nn.Module):
    def __init__(self, dim: int, dim_out: int, time_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Mish(), nn.Linear(time_dim, dim_out))
        self.block1, self.block2 = Block1D(dim, dim_out), Block1D(dim_out, dim_out)
        self.res_conv = nn.Conv1d(dim, dim_out, 1)

    def forward(self, x, t):
        h = self.block2(self.block1(x) + self.mlp(t)[:, :, None])
        return h + self.res_conv(x)


class _Attention(nn.Module):
    """diffusers' Attention for self-attention (to_q / to_k / to_v without bias, to_out.0 with bias)."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        inner, self.heads = heads * head_dim, heads
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, inner, bias=False) for _ in range(3))
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(0.0)])

    def forward(self, x):
        B, T, _ = x.shape
        q, k, v = (p(x).view(B, T, self.heads, -1).transpose(1, 2) for p in (self.to_q, self.to_k, self.to_v))
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, -1)
        return self.to_out[0](y)


class _GELUProj(nn.Module):
    def __init__(self, d_in, d_out):
        super().__init__()
        self.proj = nn.Linear(d_in, d_out)

    def forward(self, x):
        return F.gelu(self.proj(x))


class TransformerBlock(nn.Module):
    """diffusers' BasicTransformerBlock as used here: x + attn1(norm1(x)), then x + ff(norm3(x))."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.norm1, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn1 = _Attention(dim, heads, head_dim)
        self.ff = nn.Module()
        self.ff.net = nn.ModuleList([_GELUProj(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim)])

    def forward(self, x):  # (B, T, C)
        x = x + self.attn1(self.norm1(x))
        h = self.norm3(x)
        for m in self.ff.net:
            h = m(h)
        return x + h


class _TimeMLP(nn.Module):
    def __init__(self, d_in: int, d: int):
        super().__init__()
        self.linear_1, self.linear_2 = nn.Linear(d_in, d), nn.Linear(d, d)

    def forward(self, t):
        return self.linear_2(F.silu(self.linear_1(t)))


class Downsample1D(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv1d(c, c, 3, 2, 1)

    def forward(self, x):
        return self.conv(x)


class Upsample1D(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(c, c, 4, 2, 1)

    def forward(self, x):
        return self.conv(x)


class ConditionalDecoder(nn.Module):
    """v(x, mu, t, spks, cond): concat [x, mu, spks, cond] on channels -> down / mid / up U-Net -> (B, 80, T)."""

    def __init__(self, cfg: FlowConfig):
        super().__init__()
        ch, c_in = cfg.est_channels, cfg.est_in_channels
        tdim, heads, hd, nb = ch[0] * 4, cfg.est_num_heads, cfg.est_attention_head_dim, cfg.est_n_blocks
        self.in_channels = c_in
        self.time_mlp = _TimeMLP(c_in, tdim)

        def blocks(c):
            return nn.ModuleList(TransformerBlock(c, heads, hd) for _ in range(nb))

        self.down_blocks, self.mid_blocks, self.up_blocks = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        out = c_in
        for i, c in enumerate(ch):
            inp, out = out, c
            last = i == len(ch) - 1
            self.down_blocks.append(nn.ModuleList([ResnetBlock1D(inp, out, tdim), blocks(out),
                                                   nn.Conv1d(out, out, 3, padding=1) if last else Downsample1D(out)]))
        for _ in range(cfg.est_num_mid_blocks):
            self.mid_blocks.append(nn.ModuleList([ResnetBlock1D(ch[-1], out, tdim), blocks(out)]))
        up = tuple(ch[::-1]) + (ch[0],)
        for i in range(len(up) - 1):
            last = i == len(up) - 2
            self.up_blocks.append(nn.ModuleList([ResnetBlock1D(2 * up[i], up[i + 1], tdim), blocks(up[i + 1]),
                                                 nn.Conv1d(up[i + 1], up[i + 1], 3, padding=1) if last
                                                 else Upsample1D(up[i + 1])]))
        self.final_block = Block1D(up[-1], up[-1])
        self.final_proj = nn.Conv1d(up[-1], cfg.est_out_channels, 1)

    def time_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """Sinusoids of 1000 * t over in_channels (sin half then cos half) -> time_mlp."""
        half = self.in_channels // 2
        freq = torch.exp(torch.arange(half, device=t.device).float() * -(math.log(10000) / (half - 1)))
        e = 1000 * t.reshape(-1, 1).float() * freq[None]
        return self.time_mlp(torch.cat([e.sin(), e.cos()], dim=-1))

    @staticmethod
    def _transformers(x, blocks):
        x = x.transpose(1, 2)  # (B, T, C)
        for b in blocks:
            x = b(x)
        return x.transpose(1, 2)

    def forward(self, x, mu, t, spks, cond):
        """x, mu, cond (B, 80, T); spks (B, 80); t scalar tensor -> velocity (B, 80, T)."""
        temb = self.time_embedding(t).expand(x.shape[0], -1)
        h = torch.cat([x, mu, spks[:, :, None].expand(-1, -1, x.shape[-1]), cond], dim=1)  # (B, 320, T)
        skips = []
        for resnet, tblocks, down in self.down_blocks:
            h = self._transformers(resnet(h, temb), tblocks)
            skips.append(h)
            h = down(h)
        for resnet, tblocks in self.mid_blocks:
            h = self._transformers(resnet(h, temb), tblocks)
        for resnet, tblocks, up in self.up_blocks:
            skip = skips.pop()
            h = torch.cat([h[:, :, :skip.shape[-1]], skip], dim=1)
            h = up(self._transformers(resnet(h, temb), tblocks))
        return self.final_proj(self.final_block(h))


class _CFM(nn.Module):
    def __init__(self, cfg: FlowConfig):
        super().__init__()
        self.estimator = ConditionalDecoder(cfg)


class FlowModel(nn.Module):
    """Tokens -> mel (see the module docstring). Parameter names = the published flow.pt's."""

    def __init__(self, cfg: FlowConfig):
        super().__init__()
        self.cfg = cfg
        self.input_embedding = nn.Embedding(cfg.vocab_size, cfg.input_size)
        self.spk_embed_affine_layer = nn.Linear(cfg.spk_embed_dim, cfg.output_size)
        self.encoder = BlockConformerEncoder(cfg)
        self.encoder_proj = nn.Linear(cfg.enc_output_size, cfg.output_size)
        self.length_regulator = InterpolateRegulator(cfg)
        self.decoder = _CFM(cfg)

    @torch.no_grad()
    def inference(self, tokens: torch.Tensor, prompt_tokens: torch.Tensor, prompt_mel: torch.Tensor,
                  new_frames: int, noise: torch.Tensor, n_timesteps: int = 10,
                  embedding: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (1, n), prompt_tokens (1, p), prompt_mel (1, 80, m), noise (1, 80, m + new_frames)
        -> mel (1, 80, new_frames) for the new tokens."""
        cfg, dev = self.cfg, self.input_embedding.weight.device
        emb = torch.zeros(1, cfg.spk_embed_dim, device=dev) if embedding is None else embedding.to(dev)
        spks = self.spk_embed_affine_layer(F.normalize(emb, dim=1))  # (1, 80)
        ids = torch.cat([prompt_tokens, tokens], dim=1).to(dev).clamp(min=0)
        h = self.encoder_proj(self.encoder(self.input_embedding(ids)))  # (1, p + n, 80)
        m = prompt_mel.shape[-1]
        mu = self.length_regulator(h, m + new_frames)  # (1, 80, m + new)
        cond = torch.zeros_like(mu)
        cond[:, :, :m] = prompt_mel.to(mu)
        mel = self.solve(noise.to(mu), mu, spks, cond, n_timesteps)
        return mel[:, :, m:]

    def solve(self, x, mu, spks, cond, n_timesteps: int):
        """Euler steps on the cosine time grid with classifier-free guidance (inference_cfg_rate)."""
        if n_timesteps < 1:
            raise ValueError(f"n_timesteps must be >= 1, got {n_timesteps}")
        cfg, est = self.cfg, self.decoder.estimator
        grid = torch.linspace(0, 1, n_timesteps + 1, device=x.device)
        if cfg.t_scheduler == "cosine":
            grid = 1 - torch.cos(grid * 0.5 * torch.pi)
        w = cfg.inference_cfg_rate
        for k in range(n_timesteps):
            t, dt = grid[k], grid[k + 1] - grid[k]
            v = est(x, mu, t, spks, cond)
            if w > 0:
                v = (1.0 + w) * v - w * est(x, torch.zeros_like(mu), t, torch.zeros_like(spks),
                                            torch.zeros_like(cond))
            x = x + dt * v
        return x
