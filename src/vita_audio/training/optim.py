"""Optimiser parameter groups and the learning-rate schedule of the recipe.

Groups: (decay, no decay) x (LR scale). Biases, norms and 1-D parameters get no weight decay; parameters whose
name matches a key of `lr_scales` get their LR multiplied (stage 4: MCTP x 10). Each group has a `name`
(`base_decay`, `base_no_decay`, `x10_decay`, ...), under which its learning rate is logged (`lr/<name>`).
Schedule: linear warm-up over `warmup_ratio` of the steps, then cosine from LR down to `min_lr_ratio` x LR.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable

import torch
from torch import nn


def param_groups(
    named_params: Iterable[tuple[str, nn.Parameter]],
    lr: float,
    weight_decay: float,
    lr_scales: dict[str, float] | None = None,
    no_decay: Collection[str] = (),
) -> list[dict]:
    """Parameter groups of the trainable parameters; names in `no_decay` never get weight decay."""
    scales = [(re.compile(p), s) for p, s in (lr_scales or {}).items()]
    groups: dict[tuple[float, float], dict] = {}
    for name, p in named_params:
        if not p.requires_grad:
            continue
        scale = next((s for r, s in scales if r.search(name)), 1.0)
        wd = 0.0 if p.ndim < 2 or "norm" in name or name.endswith(".bias") or name in no_decay else weight_decay
        gname = f"{'base' if scale == 1.0 else f'x{scale:g}'}_{'decay' if wd else 'no_decay'}"  # e.g. x10_decay
        group = groups.setdefault(
            (scale, wd), {"params": [], "names": [], "lr": lr * scale, "weight_decay": wd, "name": gname}
        )
        group["params"].append(p)
        group["names"].append(name)
    if not groups:
        raise ValueError("no trainable parameters: check the freeze rules of this stage")
    return list(groups.values())


def warmup_cosine(step: int, total_steps: int, warmup_ratio: float = 0.03, min_lr_ratio: float = 0.1) -> float:
    """LR multiplier at `step` (0-based)."""
    warmup = max(1, round(warmup_ratio * total_steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float = 0.03, min_lr_ratio: float = 0.1
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, total_steps, warmup_ratio, min_lr_ratio)
    )
