"""Offline cache of continuous encoder features (Plus variants): the frozen encoder runs once per input audio file,
training reads frames only.

Layout (one namespace per encoder identity, beside the audio-token namespaces)::

    <cache_dir>/<name>/meta.json                {"kind": "features", "identity", "dim", "frame_rate"}
    <cache_dir>/<name>/feats/<h[:2]>/<h>.npy    float16 frames (N, dim) of the audio whose content hashes to h
    <cache_dir>/<name>/manifest/...             as the audio-token cache (content hashes by path, size, mtime)

Keys are content hashes (as `AudioCodeCache`), the namespace defaults to the encoder's identity
(`feature_namespace`), and a reader given `expected_identity` refuses a namespace filled by another encoder, so
frames are keyed by content and encoder identity. Only input audio (system / user turns) is encoded: assistant
audio stays discrete codes from the audio-token cache.
"""

from __future__ import annotations

import io
import json
import hashlib
import logging
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from vita_audio.audio.io import AudioError, read_audio
from vita_audio.data.cache import AudioCodeCache, CacheError, _atomic_write, plan_fill
from vita_audio.model.vocab import AUDIO_PLACEHOLDER

log = logging.getLogger(__name__)


def feature_namespace(identity: str) -> str:
    """The default cache namespace of an encoder: `features-<identity>` (file-name safe). Identities that the
    character replacement would merge (`a/b`, `a_b`) keep apart through a short hash of the identity itself."""
    tag = hashlib.blake2b(identity.encode(), digest_size=4).hexdigest()
    return f"features-{re.sub(r'[^A-Za-z0-9._-]+', '_', identity)}-{tag}"


def audio_roles(messages: Sequence[tuple[str, str]]) -> list[str]:
    """The role of the message each `<|audio|>` sits in, in order (one entry per audio of the record)."""
    return [role for role, content in messages for _ in range(content.count(AUDIO_PLACEHOLDER))]


def input_audio_paths(records: Iterable) -> list[str]:
    """Unique audio paths of the system / user turns of some records (those a Plus model reads as features)."""
    out: set[str] = set()
    for rec in records:
        out.update(a for a, r in zip(rec.audios, audio_roles(rec.messages)) if r != "assistant")
    return sorted(out)


class AudioFeatureCache(AudioCodeCache):
    """Read/write access to one encoder's namespace of the cache (frames instead of codes).

    Args:
        cache_dir: root of the cache (`paths.cache_dir`).
        name: namespace (default for an encoder: `feature_namespace(encoder.identity)`).
        expected_identity: the identity of the encoder that must have filled it (None = unchecked).
        expected_dim: frame width the model's adapter expects (None = unchecked).
        memory_items: frames kept in memory after the first read (per process).
    """

    def __init__(self, cache_dir: str | Path, name: str, expected_identity: str | None = None,
                 expected_dim: int | None = None, memory_items: int = 4096) -> None:
        super().__init__(cache_dir, name, None, expected_identity, memory_items)
        self.expected_dim = expected_dim

    def meta(self) -> dict:
        fresh = self._meta is None
        meta = super().meta()
        if fresh:
            if meta.get("kind") != "features":
                self._meta = None
                raise CacheError(f"cache {str(self.root)!r} holds audio codes, not encoder features: use another "
                                 "feature cache name")
            if self.expected_dim is not None and int(meta["dim"]) != int(self.expected_dim):
                self._meta = None
                raise CacheError(f"cache {str(self.root)!r} holds {meta['dim']}-dim frames (encoder "
                                 f"{meta['identity']!r}) but the adapter expects {self.expected_dim}")
        return meta

    def claim(self, encoder, rebuild: bool = False) -> None:  # type: ignore[override]
        meta = {"kind": "features", "identity": encoder.identity, "dim": int(encoder.dim),
                "frame_rate": float(encoder.frame_rate), "codebook_size": 0}
        if self.meta_path.is_file():
            old = json.loads(self.meta_path.read_text())
            if old.get("identity") == meta["identity"] and old.get("kind") == "features":
                self._meta = old
                return
            if not rebuild:
                raise CacheError(f"cache {str(self.root)!r} was filled by {old.get('identity')!r} "
                                 f"({old.get('kind', 'codes')}), not encoder {meta['identity']!r}: pass rebuild=True "
                                 "to wipe it, or use another cache name")
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.meta_path, json.dumps(meta, indent=1).encode())
        self._meta = meta

    def entry_path(self, key: str) -> Path:
        return self.root / "feats" / key[:2] / f"{key}.npy"

    def put(self, key: str, frames: torch.Tensor) -> None:  # type: ignore[override]
        arr = frames.detach().float().cpu().numpy()
        dim = int(self.meta()["dim"])
        if arr.ndim != 2 or arr.shape[1] != dim or not np.isfinite(arr).all():
            raise CacheError(f"frames must be a finite (N, {dim}) array, got shape {arr.shape}")
        path = self.entry_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.save(buf, arr.astype(np.float16), allow_pickle=False)
        _atomic_write(path, buf.getvalue())

    def get(self, path: str | Path) -> torch.Tensor:
        """Frames (FloatTensor (N, dim)) of an audio file; `CacheError` when missing."""
        self.meta()
        key = self.key(path)
        arr = self._codes.get(key)
        if arr is None:
            entry = self.entry_path(key)
            if not entry.is_file():
                raise CacheError(f"no cached encoder features for {str(path)!r} in {str(self.root)!r} (new or "
                                 "changed file?): fill the feature cache again (data.fill_features=true, or "
                                 "vita_audio.data.feature_cache.build_feature_cache); it only encodes what is missing")
            arr = np.load(entry, allow_pickle=False)
            if len(self._codes) < self.memory_items:
                self._codes[key] = arr
        return torch.from_numpy(arr.astype(np.float32))


def build_feature_cache(
    audio_paths: Iterable[str | Path],
    encoder,
    cache_dir: str | Path,
    name: str | None = None,
    on_error: str = "error",
    rebuild: bool = False,
) -> dict[str, int]:
    """Encode every audio file not yet in the feature cache; returns {"total", "encoded", "cached", "failed"}."""
    cache = AudioFeatureCache(cache_dir, name or feature_namespace(encoder.identity))
    cache.claim(encoder, rebuild=rebuild)
    paths = sorted({str(p) for p in audio_paths})
    stats = {"total": len(paths), "encoded": 0, "cached": 0, "failed": 0}
    hashed, todo = plan_fill(cache, paths, on_error, stats)
    for p, key in todo:
        try:
            wav, _ = read_audio(p, encoder.sample_rate)
        except AudioError as e:
            if on_error == "error":
                raise CacheError(f"cannot encode {p!r}: {e}") from e
            log.warning("skipping %s: %s", p, e)
            stats["failed"] += 1
            continue
        with torch.inference_mode():
            cache.put(key, encoder.encode(wav, encoder.sample_rate))
        stats["encoded"] += 1
    cache.write_manifest(hashed)
    if stats["encoded"]:
        log.info("feature cache %s: encoded %d of %d input audio files", cache.name, stats["encoded"], len(paths))
    return stats
