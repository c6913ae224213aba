"""The flow's velocity estimator (`decoder.estimator` in flow.pt): CosyVoice's ConditionalDecoder, a 1-D U-Net.

    [x, mu, spks (broadcast), cond] (B, 320, T) --down: ResNet block + transformer blocks + stride-2 conv
        --12 mid: ResNet block + transformer blocks --up: concat skip, ResNet + transformers + transposed conv
        --final Block1D + 1x1 conv--> velocity (B, 80, T); the time t enters every ResNet block through an MLP.

The transformer blocks are diffusers' BasicTransformerBlock (self-attention only) with its parameter names.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vita_audio.audio.glm4voice.flow_config import FlowConfig


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
