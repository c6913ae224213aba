"""Targets and chunked cross-entropy of the MCTP levels (method spec, section 2).

Window t of level k predicts x[t+k+2]; its target is labels[t+k+2] when the tokens x[t..t+k+2] all lie in one
packed sample, else IGNORE_INDEX. The last window of each level (t = T-k-2) predicts past the row: no target.
Each level's loss is computed by `chunked_cross_entropy`, one level after the other, so at most `chunk_rows x V`
logits exist at any time (never N x T x V).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from vita_audio.model.loss import IGNORE_INDEX, chunked_cross_entropy, shifted_targets
from vita_audio.model.mctp import segment_index

TokenFilter = Callable[[torch.Tensor], torch.Tensor]  # target ids (any shape) -> bool mask, True = supervise


def mctp_targets(
    labels: torch.Tensor,  # (B, T) unshifted: labels[t] supervises token t, IGNORE_INDEX = unsupervised
    level: int,
    sample_ids: torch.Tensor | None = None,  # (B, T)
    token_filter: TokenFilter | None = None,
) -> torch.Tensor:
    """Targets of the T-level-1 windows of `level`: (B, T) -> (B, T - level - 1)."""
    B, T = labels.shape
    W = T - level - 1
    shift = level + 2
    targets = labels.new_full((B, max(W, 0)), IGNORE_INDEX)  # (B, W)
    n = T - shift  # windows that have a target inside the row
    if n <= 0:
        return targets
    # segment indices (not raw sample ids): x[t] and x[t+k+2] in one segment <=> x[t..t+k+2] all in one sample
    segments = None if sample_ids is None else segment_index(sample_ids)  # (B, T)
    targets[:, :n] = shifted_targets(labels, shift, segments)  # (B, n)
    if token_filter is not None:
        keep = token_filter(targets) & (targets != IGNORE_INDEX)
        targets = torch.where(keep, targets, torch.full_like(targets, IGNORE_INDEX))
    return targets


def token_range_filter(start: int, end: int) -> TokenFilter:
    """A filter selecting target ids in [start, end), e.g. the audio tokens (`AudioVocab.audio_offset/audio_end`)."""

    def keep(ids: torch.Tensor) -> torch.Tensor:
        return (ids >= start) & (ids < end)

    return keep


def mctp_losses(
    levels: list[torch.Tensor],  # level k: (B, T-k-1, H) final-normed hidden of module k
    labels: torch.Tensor,  # (B, T)
    sample_ids: torch.Tensor | None,  # (B, T)
    lm_head_weight: torch.Tensor,  # (V, H)
    chunk_rows: int = 1024,
    token_filter: TokenFilter | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per module k: (sum of CE, number of supervised windows, number predicted correctly).

    Mean CE of module k = sum / max(count, 1); the weighting across modules is the caller's (training module).
    """
    out = []
    for k, h in enumerate(levels):
        targets = mctp_targets(labels, k, sample_ids, token_filter)  # (B, W)
        H = h.shape[-1]
        rows = h.reshape(-1, H)  # (B*W, H): window t of level k predicts x[t+k+2]
        out.append(chunked_cross_entropy(rows, lm_head_weight, targets.reshape(-1), chunk_rows))  # targets (B*W,)
    return out
