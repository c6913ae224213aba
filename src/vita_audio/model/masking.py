"""Attention masks for packed rows: causal inside each sample, nothing across samples.

`packed_causal_mask` is the boolean block-diagonal mask; `attention_mask_for` turns it into what the configured
attention implementation of an HF model takes:

    sdpa                 boolean (B, 1, T, T), True = attend
    eager                additive float (B, 1, T, T): 0 where allowed, the dtype's minimum elsewhere
    flash_attention_*    None: HF's flash-attention path runs variable-length attention from `position_ids`
                         that restart at 0 for each packed sample (the packer's positions do)
"""

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


def attention_mask_for(sample_ids: torch.Tensor, attn_implementation: str | None, dtype: torch.dtype) -> torch.Tensor | None:
    """The packed mask of `sample_ids` (B, T) in the form `attn_implementation` takes (see the module docstring)."""
    impl = attn_implementation or "sdpa"
    if impl.startswith("flash_attention"):
        return None
    mask = packed_causal_mask(sample_ids)  # (B, 1, T, T) bool
    if impl == "sdpa":
        return mask
    if impl == "eager":
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)
    raise ValueError(f"packed rows need attn_implementation 'sdpa', 'eager' or 'flash_attention_2', not {impl!r}")
