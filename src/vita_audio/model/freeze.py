"""Freezing declared as regex lists, applied in one place, logged and checked.

`frozen` patterns freeze every parameter whose name matches; when `trainable` is given, only parameters that
match it stay trainable (and `frozen` still wins). A pattern that matches nothing is a warning: it is almost
always a typo or a renamed module.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass

from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FreezeReport:
    trainable: int
    total: int
    unmatched: tuple[str, ...]

    def __str__(self) -> str:
        share = 100.0 * self.trainable / max(self.total, 1)
        return f"trainable parameters: {self.trainable:,} / {self.total:,} ({share:.2f}%)"


def apply_freeze(module: nn.Module, frozen: list[str] | None = None, trainable: list[str] | None = None) -> FreezeReport:
    frozen_re = [re.compile(p) for p in (frozen or [])]
    trainable_re = [re.compile(p) for p in (trainable or [])] if trainable is not None else None
    used: set[str] = set()
    n_train = n_total = 0
    for name, param in module.named_parameters():
        keep = True
        if trainable_re is not None:
            hits = [r.pattern for r in trainable_re if r.search(name)]
            used.update(hits)
            keep = bool(hits)
        hits = [r.pattern for r in frozen_re if r.search(name)]
        used.update(hits)
        if hits:
            keep = False
        param.requires_grad_(keep)
        n_total += param.numel()
        n_train += param.numel() if keep else 0
    declared = [r.pattern for r in frozen_re] + [r.pattern for r in (trainable_re or [])]
    unmatched = tuple(p for p in declared if p not in used)
    for p in unmatched:
        warnings.warn(f"freeze pattern {p!r} matched no parameter name", stacklevel=2)
    report = FreezeReport(n_train, n_total, unmatched)
    log.info(str(report))
    return report
