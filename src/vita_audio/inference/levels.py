"""One MCTP level's decoding state (the fast decoder's, `decoder.py`): its KV cache over the windows it has
processed, and the backlog of h^k inputs of the windows it has not processed yet.

Window t of level k combines E(x[t+k+1]) with h^k[t]; its output is h^(k+1)[t], the next level's input. The backlog
grows when the level below (the backbone for level 0) appends its outputs, and the level processes all of it in one
call. Verified mode crops a level back to the accepted tokens (`truncate`) and keeps a few processed inputs for that
(`trim`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DynamicCache


@dataclass
class Level:
    """One MCTP level's state: its KV cache, the windows it has processed and the backlog of h^k inputs."""

    cache: DynamicCache = field(default_factory=DynamicCache)
    seen: int = 0  # windows 0..seen-1 are in `cache`
    start: int = 0  # window index of buffer[:, 0]
    buffer: torch.Tensor | None = None  # (B, m, H) h^k of windows start..start+m-1

    @property
    def end(self) -> int:
        return self.start + (0 if self.buffer is None else self.buffer.shape[1])

    def append(self, h: torch.Tensor, start: int) -> None:
        if self.buffer is None or self.buffer.shape[1] == 0:
            self.buffer, self.start = h, start
            return
        if start != self.end:
            raise RuntimeError(f"MCTP backlog out of order: windows from {start} appended after {self.end}")
        self.buffer = torch.cat([self.buffer, h], dim=1)

    def truncate(self, processed: int, inputs: int) -> None:
        """Keep windows < `processed` in the cache and inputs h^k[t] for t < `inputs` (the rest used rejected
        tokens). The caches of different levels drop different numbers of windows."""
        if self.seen > processed:
            self.cache.crop(processed - self.seen)  # crop takes minus the number of windows to drop
            self.seen = processed
        if self.buffer is not None and self.end > inputs:
            self.buffer = self.buffer[:, : max(0, inputs - self.start)]

    def trim(self, keep: int) -> None:
        """Forget processed windows older than the last `keep` (verified mode may need to redo those)."""
        drop = self.seen - keep - self.start
        if self.buffer is not None and drop > 0:
            self.buffer = self.buffer[:, drop:]
            self.start += drop
