"""The Plus adapter: continuous encoder frames -> LLM input embeddings (method spec, section 1).

    frames (N, D) --LayerNorm(D)--> --Linear(D -> H, no bias)--> GELU --Linear(H -> H, no bias)--> (N, H)

No temporal down-sampling: one output per encoder frame, scattered into the input embeddings at the placeholder
positions (`scatter_audio`). Parameter names follow the reference layout (`pre_proj_layernorm`, `mlp.0`, `mlp.2`).
"""

from __future__ import annotations

import torch
from torch import nn


class AudioAdapter(nn.Module):
    def __init__(self, encoder_dim: int, hidden_size: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.encoder_dim, self.hidden_size = int(encoder_dim), int(hidden_size)
        self.pre_proj_layernorm = nn.LayerNorm(self.encoder_dim)
        self.mlp = nn.Sequential(
            nn.Linear(self.encoder_dim, self.hidden_size, bias=False),
            nn.GELU(),
            nn.Linear(self.hidden_size, self.hidden_size, bias=False),
        )
        for lin in (self.mlp[0], self.mlp[2]):
            nn.init.normal_(lin.weight, std=init_std)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., H)"""
        return self.mlp(self.pre_proj_layernorm(frames))


def scatter_audio(embeds: torch.Tensor, input_ids: torch.Tensor, placeholder_id: int,
                  audio_embeds: torch.Tensor) -> torch.Tensor:
    """`embeds` (B, T, H) with the rows at `input_ids == placeholder_id` replaced, in row-major order, by the rows of
    `audio_embeds` (N, H); N must equal the number of placeholders. Out of place (autograd-safe)."""
    where = input_ids == placeholder_id  # (B, T)
    n = int(where.sum())
    if n != audio_embeds.shape[0]:
        raise ValueError(f"{n} audio placeholder position(s) in the batch but {audio_embeds.shape[0]} encoder "
                         "frame(s): the features do not belong to these ids")
    if n == 0:
        return embeds + 0.0 * audio_embeds.sum()  # keeps the adapter in the graph (DDP, empty batches)
    return embeds.masked_scatter(where[..., None], audio_embeds.to(embeds.dtype))
