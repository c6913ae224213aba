"""Offline audio-token cache: the audio tokenizer runs once per file; training reads codes only.

Layout (one namespace per audio tokenizer)::

    <cache_dir>/<name>/meta.json                 {"identity", "codebook_size", "frame_rate"}
    <cache_dir>/<name>/codes/<h[:2]>/<h>.npy     codes of the audio whose *content* hashes to h (blake2b-128)

Keys are content hashes, so renaming a file keeps its entry and editing a file makes a missing entry (a clear
error, never stale codes). `meta.json` records which tokenizer filled the namespace: filling it with another
tokenizer is refused. Entries are written atomically (temp file + rename), so an interrupted build resumes
where it stopped, a second run does nothing, and several processes can fill the same cache (`shard`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from vita_audio.audio.interface import AudioTokenizer
from vita_audio.audio.io import AudioError, read_audio

log = logging.getLogger(__name__)


class CacheError(RuntimeError):
    """A cache entry that is missing or was made by another tokenizer; says which command fixes it."""


def content_hash(path: str | Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class AudioCodeCache:
    """Read/write access to one tokenizer's namespace of the cache.

    Args:
        cache_dir: root of the cache (`paths.cache_dir`).
        name: namespace, one per audio tokenizer (e.g. "builtin").
        codebook_size: when given, must match the namespace's `meta.json` (catches a cache of another codec).
        memory_items: codes kept in memory after the first read (per process).
    """

    def __init__(
        self, cache_dir: str | Path, name: str, codebook_size: int | None = None, memory_items: int = 200_000
    ) -> None:
        self.root = Path(cache_dir) / name
        self.name = name
        self.expected_codebook_size = codebook_size
        self.memory_items = memory_items
        self._hash_memo: dict[tuple[str, int, int], str] = {}
        self._codes: dict[str, np.ndarray] = {}
        self._meta: dict | None = None

    # -- metadata -----------------------------------------------------------------------------------------
    @property
    def meta_path(self) -> Path:
        return self.root / "meta.json"

    def meta(self) -> dict:
        if self._meta is None:
            if not self.meta_path.is_file():
                raise CacheError(
                    f"no audio-token cache at {str(self.root)!r} (meta.json missing). Fill it first: "
                    f"python -m vita_audio.data.tokenize --data <data config> --audio {self.name} "
                    f"(see vita_audio.data.tokenize)"
                )
            self._meta = json.loads(self.meta_path.read_text())
            cb = self.expected_codebook_size
            if cb is not None and int(self._meta["codebook_size"]) != int(cb):
                raise CacheError(
                    f"cache {str(self.root)!r} holds codes of a {self._meta['codebook_size']}-entry codebook "
                    f"(tokenizer {self._meta['identity']!r}) but the model's audio vocabulary has {cb}: "
                    "point data.cache_name at the cache of the configured audio tokenizer"
                )
        return self._meta

    def claim(self, tokenizer: AudioTokenizer, rebuild: bool = False) -> None:
        """Bind the namespace to `tokenizer` (writes meta.json), refusing one filled by another tokenizer."""
        meta = {"identity": tokenizer.identity, "codebook_size": int(tokenizer.codebook_size),
                "frame_rate": float(tokenizer.frame_rate)}
        if self.meta_path.is_file():
            old = json.loads(self.meta_path.read_text())
            if old.get("identity") != meta["identity"]:
                if not rebuild:
                    raise CacheError(
                        f"cache {str(self.root)!r} was filled by tokenizer {old.get('identity')!r}, not "
                        f"{meta['identity']!r}: pass --rebuild to wipe it, or use another cache name"
                    )
                shutil.rmtree(self.root)
            else:
                self._meta = old
                return
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.meta_path, json.dumps(meta, indent=1).encode())
        self._meta = meta

    # -- entries ------------------------------------------------------------------------------------------
    def entry_path(self, key: str) -> Path:
        return self.root / "codes" / key[:2] / f"{key}.npy"

    def key(self, path: str | Path) -> str:
        """Content hash of an audio file, memoised on (path, size, mtime)."""
        try:
            st = os.stat(path)
        except OSError as e:
            raise CacheError(f"audio file {str(path)!r} cannot be read ({e.strerror})") from e
        memo = (str(path), st.st_size, st.st_mtime_ns)
        key = self._hash_memo.get(memo)
        if key is None:
            key = self._hash_memo[memo] = content_hash(path)
        return key

    def has(self, key: str) -> bool:
        return key in self._codes or self.entry_path(key).is_file()

    def put(self, key: str, codes: torch.Tensor) -> None:
        arr = codes.detach().cpu().numpy()
        cb = int(self.meta()["codebook_size"])
        if arr.ndim != 1 or (arr.size and (arr.min() < 0 or arr.max() >= cb)):
            raise CacheError(f"codes must be a 1-D sequence in [0, {cb}), got shape {arr.shape}")
        dtype = np.int16 if cb <= 32768 else np.int32
        path = self.entry_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.save(buf, arr.astype(dtype), allow_pickle=False)
        _atomic_write(path, buf.getvalue())

    def get(self, path: str | Path) -> torch.Tensor:
        """Codes (LongTensor (N,)) of an audio file; `CacheError` when missing."""
        self.meta()
        key = self.key(path)
        arr = self._codes.get(key)
        if arr is None:
            entry = self.entry_path(key)
            if not entry.is_file():
                raise CacheError(
                    f"no cached codes for {str(path)!r} in {str(self.root)!r} (new or changed file?): run "
                    f"python -m vita_audio.data.tokenize over this data again (it only encodes what is missing)"
                )
            arr = np.load(entry, allow_pickle=False)
            if len(self._codes) < self.memory_items:
                self._codes[key] = arr
        return torch.from_numpy(arr.astype(np.int64))


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def build_cache(
    audio_paths: Iterable[str | Path],
    tokenizer: AudioTokenizer,
    cache_dir: str | Path,
    name: str,
    shard: int = 0,
    num_shards: int = 1,
    batch_size: int = 16,
    on_error: str = "error",
    rebuild: bool = False,
    progress: bool = True,
) -> dict[str, int]:
    """Encode every audio file not yet in the cache; returns counts {"total", "encoded", "cached", "failed"}.

    Files are deduplicated and sorted; this process takes every `num_shards`-th one from `shard` (run shards in
    parallel processes). Unreadable files raise (`on_error="error"`) or are counted as failed (`"skip"`).
    """
    cache = AudioCodeCache(cache_dir, name)
    cache.claim(tokenizer, rebuild=rebuild)
    paths = sorted({str(p) for p in audio_paths})[shard::num_shards]
    stats = {"total": len(paths), "encoded": 0, "cached": 0, "failed": 0}
    todo: list[tuple[str, str]] = []
    for p in paths:
        try:
            key = cache.key(p)
        except CacheError:
            if on_error == "error":
                raise
            stats["failed"] += 1
            continue
        if cache.has(key):
            stats["cached"] += 1
        else:
            todo.append((p, key))
    t0, last = time.time(), time.time()
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        wavs, keys = [], []
        for p, key in batch:
            try:
                wav, _ = read_audio(p, tokenizer.sample_rate)
            except AudioError as e:
                if on_error == "error":
                    raise CacheError(f"cannot tokenize {p!r}: {e}") from e
                log.warning("skipping %s: %s", p, e)
                stats["failed"] += 1
                continue
            wavs.append(wav)
            keys.append(key)
        with torch.inference_mode():
            codes = tokenizer.encode_batch(wavs, tokenizer.sample_rate) if wavs else []
        for key, c in zip(keys, codes):
            cache.put(key, c)
            stats["encoded"] += 1
        if progress and time.time() - last > 10:
            last = time.time()
            log.info("cache %s: %d/%d encoded (%.1f files/s)", name, stats["encoded"], len(todo),
                     stats["encoded"] / (last - t0))
    return stats
