"""Progress over the long evaluation loops, readable in a terminal and in a log file.

On a terminal: a tqdm bar. Otherwise (CI, `> log`, a pipe): no carriage-return frames, one plain line at most every
`every` seconds and one at the end, e.g. `asr/boost: 20/40 samples, 31 s, ETA 31 s`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import TextIO, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, unit: str = "samples", every: float = 30.0,
             stream: TextIO | None = None) -> Iterator[T]:
    stream = stream if stream is not None else sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        from tqdm.auto import tqdm

        yield from tqdm(items, desc=desc, unit=unit[:-1] if unit.endswith("s") else unit, mininterval=2,
                        file=stream)
        return
    total = len(items) if isinstance(items, Sized) else None
    t0 = last = time.monotonic()
    n = 0
    for n, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= every and (total is None or n < total):
            stream.write(_line(desc, n, total, unit, now - t0) + "\n")
            stream.flush()
            last = now
    stream.write(_line(desc, n, total, unit, time.monotonic() - t0) + "\n")
    stream.flush()


def _line(desc: str, n: int, total: int | None, unit: str, seconds: float) -> str:
    of = f"/{total}" if total is not None else ""
    eta = f", ETA {seconds / n * (total - n):.0f} s" if total and 0 < n < total else ""
    return f"{desc}: {n}{of} {unit}, {seconds:.0f} s{eta}"
