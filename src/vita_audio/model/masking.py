"""Attention masks for packed rows: causal inside each sample, nothing across samples."""

from __future__ import annotations

import torch


def packed_causal_mask(sample_ids: torch.Tensor) -> torch.Tensor:
    """Boolean mask (B, 1, T, T), True where query i may attend key j.

    `sample_ids` (B, T) gives each token's sample index within its row (any integers; padding should have its
    own id, e.g. -1, so that it attends only to itself and no real token attends to it).
    """
    T = sample_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=sample_ids.device).tril_()  # (T, T)
    same = sample_ids[:, :, None] == sample_ids[:, None, :]  # (B, T, T)
    return (same & causal)[:, None]  # (B, 1, T, T)
