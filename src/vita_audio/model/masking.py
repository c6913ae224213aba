"""Attention for packed rows: causal inside each sample, nothing across samples, in every attention implementation.

`packed_attention_kwargs` gives the keyword arguments an HF model's forward needs so that every configured
attention implementation sees the sample boundaries of packed rows (B rows, any B):

    sdpa / eager         no mask: transformers builds the block-diagonal causal mask itself from `position_ids`
                         that restart at 0 per packed sample (the packer's positions do); where the positions do
                         not mark the samples of `sample_ids`, the hand-built mask of `attention_mask_for`
    flash_attention_*    the varlen boundaries of the flattened batch: `cu_seq_lens_q/k` (int32) and
                         `max_length_q/k` (transformers then runs the varlen kernel on B*T tokens)
    anything else        an error (no implementation-independent way to pass the boundaries)

`packed_causal_mask` is the boolean block-diagonal mask; `attention_mask_for` turns it into the form an
implementation takes (sdpa: boolean (B, 1, T, T), True = attend; eager: additive float, 0 / dtype minimum).
"""

from __future__ import annotations

from typing import Any

import torch


def packed_causal_mask(sample_ids: torch.Tensor) -> torch.Tensor:
    """Boolean mask (B, 1, T, T), True where query i may attend key j.

    `sample_ids` (B, T) gives each token's sample index within its row (any integers; padding has its own id,
    e.g. -1, so that no real token attends to it; padding outputs are never supervised).
    """
    T = sample_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=sample_ids.device).tril_()  # (T, T)
    same = sample_ids[:, :, None] == sample_ids[:, None, :]  # (B, T, T)
    return (same & causal)[:, None]  # (B, 1, T, T)


def attention_mask_for(sample_ids: torch.Tensor, attn_implementation: str | None, dtype: torch.dtype) -> torch.Tensor | None:
    """The packed mask of `sample_ids` (B, T) in the form `attn_implementation` takes; None for flash attention
    (which takes boundaries, not a mask: see `packed_attention_kwargs`)."""
    impl = attn_implementation or "sdpa"
    if impl.startswith("flash_attention"):
        return None
    mask = packed_causal_mask(sample_ids)  # (B, 1, T, T) bool
    if impl == "sdpa":
        return mask
    if impl == "eager":
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)
    raise ValueError(f"packed rows need attn_implementation 'sdpa', 'eager' or 'flash_attention_2', not {impl!r}")


def cu_seqlens(sample_ids: torch.Tensor) -> torch.Tensor:
    """Cumulative sequence lengths (int32) of the flattened batch for flash-attention varlen kernels.

    Each packed sample is one sequence; each padding token is its own length-1 sequence (it attends only to
    itself); no sequence crosses a row end. sample_ids: (B, T) -> (num_sequences + 1,)
    """
    flat = sample_ids.reshape(-1)  # (B*T,)
    T = sample_ids.shape[1]
    pos = torch.arange(flat.numel(), device=flat.device)
    starts = torch.ones_like(flat, dtype=torch.bool)
    starts[1:] = (flat[1:] != flat[:-1]) | (pos[1:] % T == 0) | (flat[1:] < 0)
    idx = torch.nonzero(starts).flatten()  # (num_sequences,) start of each sequence in flat
    return torch.cat([idx, idx.new_tensor([flat.numel()])]).to(torch.int32)  # (num_sequences + 1,)


def positions_mark_samples(position_ids: torch.Tensor, sample_ids: torch.Tensor) -> bool:
    """True when `position_ids` (B, T) start a new sequence (a step other than +1) exactly where a real token
    starts a new sample of `sample_ids` (B, T): then transformers' packed-sequence detection from the positions
    gives the same attention on every real token as the mask of `sample_ids`."""
    pos_start = torch.diff(position_ids, prepend=position_ids[:, :1] - 1, dim=-1) != 1  # (B, T)
    sid_start = torch.diff(sample_ids, prepend=sample_ids[:, :1], dim=-1) != 0  # (B, T); t = 0 starts in neither
    return bool(((pos_start == sid_start) | (sample_ids < 0)).all())


def packed_attention_kwargs(
    sample_ids: torch.Tensor,  # (B, T) packed sample index per token, -1 for padding
    position_ids: torch.Tensor,  # (B, T) restarting at 0 per sample
    attn_implementation: str | None,
    dtype: torch.dtype,
) -> dict[str, Any]:
    """Keyword arguments of the HF base model's forward that keep attention inside each packed sample."""
    impl = attn_implementation or "sdpa"
    if impl.startswith("flash_attention"):
        cu = cu_seqlens(sample_ids)  # (S + 1,) over the flattened B*T tokens
        longest = int((cu[1:] - cu[:-1]).max())
        return {"attention_mask": None, "cu_seq_lens_q": cu, "cu_seq_lens_k": cu,
                "max_length_q": longest, "max_length_k": longest}
    if impl in ("sdpa", "eager"):
        if positions_mark_samples(position_ids, sample_ids):
            return {"attention_mask": None}  # transformers' mask from the positions (test_backbone checks equality)
        return {"attention_mask": attention_mask_for(sample_ids, impl, dtype)}  # (B, 1, T, T)
    raise ValueError(
        f"packed rows (sample_ids) need attn_implementation 'sdpa', 'eager' or 'flash_attention_*', not {impl!r}: "
        "no other implementation is given the sample boundaries, so attention would cross packed samples"
    )
