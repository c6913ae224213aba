"""Packing whole samples into rows of `max_len` tokens.

    samples (ids, labels) of lengths 700, 300, 1200, 900, ...   (epoch order)
        -> plan_rows: online best fit over `open_rows` open rows -> [[0, 2], [1, 3, ...], ...] (indices)
        -> collate_rows: (B, T) input_ids / labels / position_ids / sample_ids

Plus samples are (ids, labels, [frames (N_i, D)]): the batch then also holds `audio_features` (N, D) float, the
frames of every placeholder position in row-major order (rows in order, samples in row order).

A sample is never split; `position_ids` restart at 0 per sample; `sample_ids` number the samples of a row 0, 1,
2, ... and are -1 on padding, so `vita_audio.model.masking.packed_causal_mask` (SDPA) gives a block-diagonal
causal mask and `cu_seqlens` gives the boundaries for flash-attention varlen kernels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vita_audio.model.loss import IGNORE_INDEX
from vita_audio.model.masking import cu_seqlens  # noqa: F401  (the varlen boundaries of a batch; lives in model/)


def plan_rows(lengths: Sequence[int], order: Sequence[int], max_len: int, open_rows: int = 64) -> list[list[int]]:
    """Rows of sample indices (from `order`, every index exactly once) whose lengths sum to <= max_len.

    Online best fit: each sample goes to the open row with the least room that still fits it, else a new row;
    when more than `open_rows` rows are open, the fullest is closed. Deterministic; about O(n * open_rows).
    """
    rows: list[list[int]] = []
    open_: list[tuple[int, list[int]]] = []  # (room left, indices)
    for i in order:
        n = lengths[i]
        if n > max_len:
            raise ValueError(f"sample {i} has {n} tokens > max_len {max_len}: filter over-long samples first")
        best = -1
        for k, (room, _) in enumerate(open_):
            if n <= room and (best < 0 or room < open_[best][0]):
                best = k
        if best < 0:
            open_.append((max_len - n, [i]))
            if len(open_) > open_rows:
                k = min(range(len(open_)), key=lambda j: open_[j][0])
                rows.append(open_.pop(k)[1])
        else:
            room, idx = open_[best]
            idx.append(i)
            open_[best] = (room - n, idx)
            if room - n == 0:
                rows.append(open_.pop(best)[1])
    rows.extend(idx for _, idx in sorted(open_, key=lambda r: r[0]))
    return rows


def padding_fraction(lengths: Sequence[int], rows: Sequence[Sequence[int]], max_len: int) -> float:
    if not rows:
        return 0.0
    used = sum(lengths[i] for r in rows for i in r)
    return 1.0 - used / (len(rows) * max_len)


def collate_rows(
    rows: Sequence[Sequence[tuple]], max_len: int, pad_id: int, feature_dim: int | None = None
) -> dict[str, torch.Tensor]:
    """rows[b] = [(ids, labels), ...] -> dict of LongTensors (B, max_len) per the batch contract.

    With `feature_dim` (Plus), samples are (ids, labels, frames) and `audio_features` (N, feature_dim) is added
    (possibly empty)."""
    B = len(rows)
    input_ids = torch.full((B, max_len), pad_id, dtype=torch.long)
    labels = torch.full((B, max_len), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((B, max_len), dtype=torch.long)
    sample_ids = torch.full((B, max_len), -1, dtype=torch.long)
    for b, row in enumerate(rows):
        pos = 0
        for s, (ids, lab, *_) in enumerate(row):
            n = len(ids)
            if pos + n > max_len:
                raise ValueError(f"row {b} overflows max_len {max_len} at sample {s}")
            input_ids[b, pos : pos + n] = torch.as_tensor(ids, dtype=torch.long)
            labels[b, pos : pos + n] = torch.as_tensor(lab, dtype=torch.long)
            position_ids[b, pos : pos + n] = torch.arange(n)
            sample_ids[b, pos : pos + n] = s
            pos += n
    batch = {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "sample_ids": sample_ids}
    if feature_dim is not None:
        frames = [f for row in rows for sample in row for f in sample[2]]
        batch["audio_features"] = torch.cat(frames).float() if frames else torch.zeros(0, feature_dim)
    return batch
