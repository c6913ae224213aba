"""Cross-entropy over a large vocabulary without materialising all logits at once.

`chunked_cross_entropy` runs the LM head and the CE over row chunks under activation checkpointing: the
forward keeps only per-row losses, the backward recomputes one chunk's logits at a time. Peak extra memory is
about `chunk_rows x vocab` floats instead of `rows x vocab`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100


def _chunk_ce(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = (hidden @ weight.t()).float()  # (n, V)
    loss = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    correct = ((logits.argmax(-1) == targets) & (targets != IGNORE_INDEX)).sum()
    return loss, correct


def chunked_cross_entropy(
    hidden: torch.Tensor,  # (N, H) rows that predict `targets`
    weight: torch.Tensor,  # (V, H) LM head weight (no bias)
    targets: torch.Tensor,  # (N,) target ids, IGNORE_INDEX to skip
    chunk_rows: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (sum of CE over supervised rows, number of supervised rows, number predicted correctly).

    Without a supervised row the sum is a zero that still depends on `hidden` and `weight`: `backward()` works
    and gives every parameter upstream a zero gradient (DDP's reducer sees each parameter it expects, also
    without `find_unused_parameters`).
    """
    keep = targets != IGNORE_INDEX
    hidden, targets = hidden[keep], targets[keep]  # only supervised rows ever reach the LM head
    count = targets.new_tensor(targets.numel())
    correct = targets.new_zeros(())
    if targets.numel() == 0:
        zero = hidden.sum().float() * 0.0  # (0, H) rows: a zero-valued edge to whatever produced `hidden`
        if weight.requires_grad:
            zero = zero + weight[:1].sum().float() * 0.0  # ... and to the head
        return zero, count, correct
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.numel(), chunk_rows):
        h, t = hidden[start : start + chunk_rows], targets[start : start + chunk_rows]
        if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
            loss, ok = checkpoint(_chunk_ce, h, weight, t, use_reentrant=False)
        else:
            loss, ok = _chunk_ce(h, weight, t)
        total = total + loss
        correct = correct + ok
    return total, count, correct


def shifted_targets(labels: torch.Tensor, shift: int = 1, sample_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Targets for rows 0..T-shift-1: labels[t + shift], masked where t + shift is in another packed sample.

    labels: (B, T) -> (B, T - shift)
    """
    targets = labels[:, shift:].clone()  # (B, T - shift)
    if sample_ids is not None:
        crosses = sample_ids[:, shift:] != sample_ids[:, :-shift]
        targets[crosses] = IGNORE_INDEX
    return targets
