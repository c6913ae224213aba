"""GLM-4-Voice decoder, part 1: speech tokens -> 80-bin mel by conditional flow matching (CosyVoice's
`MaskedDiffWithXvec` as retrained by GLM-4-Voice), our own implementation with the published `flow.pt` names.

    tokens (1, n) --input_embedding--> (1, n, 512)
        --encoder (BlockConformerEncoder: linear embed + LayerNorm, x * sqrt(d), rel-pos self-attention that
          sees its own block of `block_size` tokens and everything before it, FFN with SiLU; pre-LN)
        --encoder_proj--> (1, n, 80) --length_regulator (nearest-neighbour resampling to the mel length, as in
          the CosyVoice revision GLM-4-Voice forked; 4 x conv/GroupNorm/Mish, 1x1 conv)--> mu (1, 80, M)
    mel = CFM(mu, spks = spk_embed_affine_layer(normalise(x-vector)), cond = prompt mel then zeros):
        x0 ~ N(0, 1); Euler over t in 1 - cos(pi/2 * linspace(0, 1, steps + 1)):
        x += dt * ((1 + w) * v(x, mu, t, spks, cond) - w * v(x, 0, t, 0, 0))     (classifier-free guidance)
        v = decoder.estimator (a 1-D U-Net: ResNet blocks + transformer blocks, down / 12 mid / up)

`prompt_tokens` / `prompt_mel` condition the new tokens on what came before (the streaming session's bounded
context); the mel frames of the prompt are generated too and dropped.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vita_audio.audio.glm4voice.estimator import ConditionalDecoder
from vita_audio.audio.glm4voice.flow_config import FlowConfig


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
        self.embed = _LinearEmbed(cfg.enc_input_size, cfg.enc_output_size)
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
    """Nearest-neighbour resampling of (B, n, C) to `frames` (mel frame f takes token floor(f * n / frames)), then
    [conv3 + GroupNorm + Mish] x len(sampling_ratios) + conv1."""

    def __init__(self, cfg: FlowConfig):
        super().__init__()
        c, layers = cfg.lr_channels, []
        for _ in cfg.lr_sampling_ratios:
            layers += [nn.Conv1d(c, c, 3, 1, 1), nn.GroupNorm(cfg.lr_groups, c), nn.Mish()]
        self.model = nn.Sequential(*layers, nn.Conv1d(c, c, 1, 1))

    def forward(self, h: torch.Tensor, frames: int) -> torch.Tensor:
        x = F.interpolate(h.transpose(1, 2).contiguous(), size=frames, mode="nearest")  # (B, C, frames)
        return self.model(x)  # (B, C, frames)


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
