"""Content digests of files: the audio-token cache's keys and the identities of weight files.

    file_digest(path)      blake2b-128 of every byte, streamed in 1 MiB blocks (never the whole file in memory)
    weights_digest(path)   the same, remembered per (absolute path, size, mtime) for the life of the process

An identity must change whenever a file's content does: a fine-tune of the same shape has the same size and often
the same first and last bytes, so nothing short of the whole file will do. Weight files are large (a GLM-4-Voice
tokenizer is about 1 GB: a couple of seconds to hash), hence the memo; it is keyed by size and mtime, so a file
rewritten in place (any normal write sets a new mtime) is hashed again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

BLOCK_BYTES = 1 << 20

_memo: dict[tuple[str, int, int], str] = {}  # (abs path, size, mtime_ns) -> digest


def file_digest(path: str | Path) -> str:
    """Hex blake2b-128 of the whole file."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK_BYTES), b""):
            h.update(block)
    return h.hexdigest()


def weights_digest(path: str | Path) -> str:
    """`file_digest`, computed once per process for an unchanged file (same path, size and mtime)."""
    ap = os.path.abspath(path)
    st = os.stat(ap)
    key = (ap, st.st_size, st.st_mtime_ns)
    if key not in _memo:
        _memo[key] = file_digest(ap)
    return _memo[key]
