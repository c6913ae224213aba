"""Offline audio-token cache: the audio tokenizer runs once per file; training reads codes only.

Layout (one namespace per audio tokenizer)::

    <cache_dir>/<name>/meta.json                 {"identity", "codebook_size", "frame_rate"} of the filling tokenizer
    <cache_dir>/<name>/codes/<h[:2]>/<h>.npy     codes of the audio whose *content* hashes to h (blake2b-128)
    <cache_dir>/<name>/manifest/<s>-of-<n>.json  {abs path: [size, mtime_ns, h]} written by shard s of n of a fill

Keys are content hashes, so renaming a file keeps its entry and editing a file makes a missing entry (a clear
error, never stale codes). `meta.json` records which tokenizer filled the namespace: filling it with another
tokenizer is refused, and a reader given `expected_identity` (the configured tokenizer's) refuses a namespace
filled by another one. Entries are written atomically (temp file + rename), so an interrupted build resumes
where it stopped, a second run does nothing, and several processes can fill the same cache (`shard`).

The manifest saves re-reading every audio file at each training start: a file whose size and mtime still match
its manifest entry takes the recorded hash; any other file is hashed (counted, logged, and `hash_report()` says
how to refresh the manifest). A file rewritten with the same size within the file system's mtime resolution
would keep its old hash: rewrite audio in place only with a new mtime (any normal write does this).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from vita_audio.audio.digest import file_digest as content_hash  # an audio file's key: all of its bytes
from vita_audio.audio.interface import AudioTokenizer
from vita_audio.audio.io import AudioError, read_audio

log = logging.getLogger(__name__)

FILL_COMMAND = "python -m vita_audio.cli.tokenize --data <data config, e.g. corpus>"


class CacheError(RuntimeError):
    """A cache entry that is missing or was made by another tokenizer; says which command fixes it."""


class AudioCodeCache:
    """Read/write access to one tokenizer's namespace of the cache.

    Args:
        cache_dir: root of the cache (`paths.cache_dir`).
        name: namespace, one per audio tokenizer (e.g. "builtin").
        codebook_size: when given, must match the namespace's `meta.json` (catches a cache of another codec).
        expected_identity: when given, the `identity` of the tokenizer that must have filled the namespace
            (catches a retrained codec of the same size); None skips the check.
        memory_items: codes kept in memory after the first read (per process).
    """

    def __init__(
        self,
        cache_dir: str | Path,
        name: str,
        codebook_size: int | None = None,
        expected_identity: str | None = None,
        memory_items: int = 200_000,
    ) -> None:
        self.root = Path(cache_dir) / name
        self.name = name
        self.expected_codebook_size = codebook_size
        self.expected_identity = expected_identity
        self.memory_items = memory_items
        self._hash_memo: dict[tuple[str, int, int], str] = {}  # (abs path, size, mtime_ns) -> content hash
        self._manifest: dict[str, tuple[int, int, str]] | None = None
        self.hashed: Counter[str] = Counter()  # files hashed because the manifest could not answer, per reason
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
                    f"{FILL_COMMAND} (data.cache_name={self.name})"
                )
            meta = json.loads(self.meta_path.read_text())
            cb = self.expected_codebook_size
            if cb is not None and int(meta["codebook_size"]) != int(cb):
                raise CacheError(
                    f"cache {str(self.root)!r} holds codes of a {meta['codebook_size']}-entry codebook "
                    f"(tokenizer {meta['identity']!r}) but the model's audio vocabulary has {cb}: "
                    "point data.cache_name at the cache of the configured audio tokenizer"
                )
            want = self.expected_identity
            if want is not None and meta["identity"] != want:
                raise CacheError(
                    f"cache {str(self.root)!r} was filled by audio tokenizer {meta['identity']!r} but the configured "
                    f"audio tokenizer is {want!r} (a retrained or another codec): its codes would be stale. Refill "
                    f"it: {FILL_COMMAND} --rebuild, or point data.cache_name at a cache filled by {want!r}"
                )
            self._meta = meta
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

    # -- manifest: content hashes by (path, size, mtime) ----------------------------------------------------
    @property
    def manifest_dir(self) -> Path:
        return self.root / "manifest"

    def manifest(self) -> dict[str, tuple[int, int, str]]:
        """{abs path: (size, mtime_ns, hash)} merged over every manifest file (the newest file wins a path)."""
        if self._manifest is None:
            merged: dict[str, tuple[int, int, str]] = {}
            files = sorted(self.manifest_dir.glob("*.json"), key=lambda f: f.stat().st_mtime_ns) \
                if self.manifest_dir.is_dir() else []
            for f in files:
                try:
                    entries = json.loads(f.read_text())["entries"]
                except (OSError, ValueError, KeyError, TypeError) as e:
                    log.warning("ignoring unreadable cache manifest %s (%s): its files will be hashed", f, e)
                    continue
                merged.update({p: (int(v[0]), int(v[1]), str(v[2])) for p, v in entries.items()})
            self._manifest = merged
        return self._manifest

    def write_manifest(self, paths: Iterable[str | Path], shard: int = 0, num_shards: int = 1) -> Path:
        """Record the hashes computed for `paths` (by `key`) in this shard's manifest file, merged with it."""
        out = self.manifest_dir / f"{shard}-of-{num_shards}.json"
        entries = {}
        if out.is_file():
            try:
                entries = json.loads(out.read_text())["entries"]
            except (OSError, ValueError, KeyError, TypeError):
                entries = {}
        for p in paths:
            st = os.stat(p)
            ap = os.path.abspath(p)
            key = self._hash_memo.get((ap, st.st_size, st.st_mtime_ns))
            if key is not None:
                entries[ap] = [st.st_size, st.st_mtime_ns, key]
        out.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(out, json.dumps({"version": 1, "entries": entries}).encode())
        self._manifest = None  # re-read on next use
        return out

    def hash_report(self) -> str | None:
        """What the manifest could not answer (None when every file came from it or no file was asked for)."""
        if not self.hashed:
            return None
        parts = ", ".join(f"{n} {why}" for why, n in sorted(self.hashed.items()))
        return (f"audio-token cache {self.name}: hashed {sum(self.hashed.values())} audio files ({parts}) instead "
                f"of reading their hash from the manifest; to start faster next time: {FILL_COMMAND}")

    # -- entries ------------------------------------------------------------------------------------------
    def entry_path(self, key: str) -> Path:
        return self.root / "codes" / key[:2] / f"{key}.npy"

    def key(self, path: str | Path) -> str:
        """Content hash of an audio file: from memory or the manifest when (size, mtime) match, else hashed."""
        try:
            st = os.stat(path)
        except OSError as e:
            raise CacheError(f"audio file {str(path)!r} cannot be read ({e.strerror})") from e
        ap = os.path.abspath(path)
        memo = (ap, st.st_size, st.st_mtime_ns)
        key = self._hash_memo.get(memo)
        if key is None:
            entry = self.manifest().get(ap)
            if entry is not None and entry[:2] == memo[1:]:
                key = entry[2]
            else:
                why = "not in the manifest" if entry is None else "changed since the manifest was written"
                if not self.hashed[why]:
                    log.info("cache %s: hashing audio files %s (first: %s)", self.name, why, ap)
                self.hashed[why] += 1
                key = content_hash(path)
            self._hash_memo[memo] = key
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
                    f"{FILL_COMMAND} again (it only encodes what is missing)"
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



def plan_fill(
    cache, paths: list[str], on_error: str, stats: dict[str, int]
) -> tuple[list[str], list[tuple[str, str]]]:
    """Hash `paths` for a cache fill: (the paths hashed, the (path, key) pairs not cached yet). Counts "cached"
    and, for unreadable files with `on_error="skip"`, "failed" in `stats`; raises CacheError otherwise."""
    hashed: list[str] = []
    todo: list[tuple[str, str]] = []
    for p in paths:
        try:
            key = cache.key(p)
        except CacheError:
            if on_error == "error":
                raise
            stats["failed"] += 1
            continue
        hashed.append(p)
        if cache.has(key):
            stats["cached"] += 1
        else:
            todo.append((p, key))
    return hashed, todo

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
    parallel processes). Unreadable files raise (`on_error="error"`) or are counted as failed (`"skip"`). The
    content hashes of this shard's files go to `manifest/<shard>-of-<num_shards>.json`, which readers use instead
    of hashing the audio again.
    """
    cache = AudioCodeCache(cache_dir, name)
    cache.claim(tokenizer, rebuild=rebuild)
    paths = sorted({str(p) for p in audio_paths})[shard::num_shards]
    stats = {"total": len(paths), "encoded": 0, "cached": 0, "failed": 0}
    hashed, todo = plan_fill(cache, paths, on_error, stats)
    cache.write_manifest(hashed, shard, num_shards)  # before encoding: an interrupted fill keeps it
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
