"""Mixing data sources: each source has a `ratio` (fraction of its records per epoch; values > 1 repeat) and an
optional `num` cap. The epoch order is a pure function of (seed, epoch).

    ratio 2.0  -> every record twice          ratio 0.05 -> a fresh random 5% each epoch
    ratio 1.5  -> every record once + a random half again      num 1000 -> at most 1000 per epoch
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Source:
    """One jsonl file of the mix (a Hydra list entry: `{path: ..., ratio: 1.0, num: null, name: asr}`)."""

    path: str
    ratio: float = 1.0
    num: int | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.ratio < 0:
            raise ValueError(f"source {self.path!r}: ratio must be >= 0, got {self.ratio}")
        if self.num is not None and self.num < 0:
            raise ValueError(f"source {self.path!r}: num must be >= 0 or null, got {self.num}")

    @property
    def label(self) -> str:
        return self.name or self.path


def as_sources(items: Sequence[Source | dict | str]) -> list[Source]:
    """Accept `Source`s, dicts (from YAML) or bare paths."""
    out = []
    for it in items or ():
        if isinstance(it, Source):
            out.append(it)
        elif isinstance(it, str):
            out.append(Source(path=it))
        else:
            out.append(Source(**dict(it)))
    return out


def source_draw(n: int, ratio: float, num: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices into one source's `n` records for one epoch (unshuffled groups, then capped by `num`)."""
    whole = int(math.floor(ratio))
    parts = [np.arange(n)] * whole
    extra = int(round((ratio - whole) * n))
    if extra:
        parts.append(np.sort(rng.choice(n, size=extra, replace=False)))
    idx = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    if num is not None and len(idx) > num:
        idx = np.sort(rng.choice(idx, size=num, replace=False))
    return idx


def epoch_order(
    sizes: Sequence[int],
    sources: Sequence[Source],
    seed: int,
    epoch: int,
    shuffle: bool = True,
) -> list[tuple[int, int]]:
    """(source index, record index) pairs of one epoch; shuffled across sources when `shuffle`."""
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    pairs = []
    for s, (n, src) in enumerate(zip(sizes, sources)):
        idx = source_draw(n, src.ratio, src.num, rng)
        pairs.append(np.stack([np.full(len(idx), s), idx], 1))  # (n_s, 2): (source, record)
    allp = np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)  # (N, 2)
    if shuffle:
        allp = allp[rng.permutation(len(allp))]
    return [(int(a), int(b)) for a, b in allp]
