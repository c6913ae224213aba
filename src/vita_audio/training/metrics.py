"""Token-weighted validation metrics of every head (the main head and each MCTP module)."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class HeadLosses(Metric):
    """Sums of CE, correct predictions and supervised targets per head over an epoch (summed across ranks).

    `compute()` gives per-head means weighted by supervised tokens (sum of CE / number of targets), never a mean
    of per-batch means: a batch with 10 supervised tokens counts 10 times less than one with 100.
    Head 0 is the main head, head k + 1 MCTP module k.
    """

    full_state_update = False

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        for name in ("ce_sum", "correct", "count"):
            self.add_state(name, default=torch.zeros(num_heads, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, stats: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
        """stats[h] = (sum of CE, number of supervised targets, number correct) of head h in one batch."""
        if len(stats) != self.num_heads:
            raise ValueError(f"expected stats of {self.num_heads} heads, got {len(stats)}")
        dev = self.ce_sum.device
        self.ce_sum += torch.stack([s.detach().to(dev, torch.float64) for s, _, _ in stats])
        self.count += torch.stack([n.detach().to(dev, torch.float64) for _, n, _ in stats])
        self.correct += torch.stack([c.detach().to(dev, torch.float64) for _, _, c in stats])

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.count.clamp(min=1)
        return {"loss": self.ce_sum / n, "acc": self.correct / n, "count": self.count}
