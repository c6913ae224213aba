"""Audio-token cache: fill, resume after an interruption, idempotent, stale/missing entries are clear errors."""

from __future__ import annotations

import pytest
import torch

from conftest import EnergyTokenizer, write_wav
from vita_audio.data.cache import AudioCodeCache, CacheError, build_cache


class Crashing(EnergyTokenizer):
    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def encode(self, wav, sample_rate):
        if self.calls >= self.after:
            raise KeyboardInterrupt("simulated interruption")
        return super().encode(wav, sample_rate)


def test_fill_resume_and_rerun(small_data):
    root, wavs, _ = small_data
    with pytest.raises(KeyboardInterrupt):
        build_cache(wavs, Crashing(after=5), root / "c", "e", batch_size=2)
    # entries written before the crash are kept; the rerun encodes only the rest
    tok = EnergyTokenizer()
    stats = build_cache(wavs, tok, root / "c", "e", batch_size=2)
    assert stats == {"total": 12, "encoded": 8, "cached": 4, "failed": 0} and tok.calls == 8
    again = build_cache(wavs + wavs, EnergyTokenizer(), root / "c", "e")
    assert again == {"total": 12, "encoded": 0, "cached": 12, "failed": 0}
    cache = AudioCodeCache(root / "c", "e", codebook_size=1024)
    ref = EnergyTokenizer()
    import soundfile as sf

    for w in wavs:
        data, sr = sf.read(w, dtype="float32")
        assert torch.equal(cache.get(w), ref.encode(torch.from_numpy(data), sr))


def test_shards_split_the_work(small_data):
    root, wavs, _ = small_data
    s0 = build_cache(wavs, EnergyTokenizer(), root / "c", "e", shard=0, num_shards=2)
    s1 = build_cache(wavs, EnergyTokenizer(), root / "c", "e", shard=1, num_shards=2)
    assert s0["encoded"] + s1["encoded"] == 12 and s0["cached"] == s1["cached"] == 0


def test_stale_missing_and_foreign_entries(small_data):
    root, wavs, _ = small_data
    build_cache(wavs[:6], EnergyTokenizer(), root / "c", "e")
    cache = AudioCodeCache(root / "c", "e", codebook_size=1024)
    with pytest.raises(CacheError, match="python -m vita_audio.cli.tokenize --data"):
        cache.get(wavs[7])  # never encoded
    write_wav(__import__("pathlib").Path(wavs[0]), 0.9, 333.0)  # the file changed after caching
    with pytest.raises(CacheError, match="new or changed file"):
        AudioCodeCache(root / "c", "e").get(wavs[0])
    with pytest.raises(CacheError, match="filled by tokenizer"):
        build_cache(wavs, EnergyTokenizer(tag="v2"), root / "c", "e")
    with pytest.raises(CacheError, match="1024-entry codebook"):
        AudioCodeCache(root / "c", "e", codebook_size=2048).get(wavs[1])
    with pytest.raises(CacheError, match="meta.json missing"):
        AudioCodeCache(root / "c", "other").get(wavs[1])
    stats = build_cache(wavs, EnergyTokenizer(tag="v2"), root / "c", "e", rebuild=True)
    assert stats["encoded"] == 12


def test_unreadable_audio(small_data):
    root, wavs, _ = small_data
    bad = root / "wavs" / "broken.wav"
    bad.write_bytes(b"RIFF not really a wav")
    with pytest.raises(CacheError, match="broken.wav"):
        build_cache([str(bad), *wavs], EnergyTokenizer(), root / "c", "e")
    stats = build_cache([str(bad), *wavs], EnergyTokenizer(), root / "c", "e", on_error="skip")
    assert stats["failed"] == 1 and stats["encoded"] + stats["cached"] == 12


def test_identity_of_the_filling_tokenizer_is_checked(small_data):
    root, wavs, _ = small_data
    build_cache(wavs, EnergyTokenizer(tag="v1"), root / "c", "e")
    same = AudioCodeCache(root / "c", "e", codebook_size=1024, expected_identity="energy-1024-v1")
    assert same.get(wavs[0]).numel() > 0
    retrained = AudioCodeCache(root / "c", "e", codebook_size=1024, expected_identity="energy-1024-v2")
    with pytest.raises(CacheError) as err:  # same codebook size, other weights: refused, both named, and the fix
        retrained.get(wavs[0])
    msg = str(err.value)
    assert "'energy-1024-v1'" in msg and "'energy-1024-v2'" in msg
    assert "python -m vita_audio.cli.tokenize --data" in msg and "--rebuild" in msg
    assert AudioCodeCache(root / "c", "e").get(wavs[0]).numel() > 0  # no expectation: unchecked


def _no_hashing(path):
    raise AssertionError(f"{path} was read to hash it although the manifest knows it")


def test_manifest_spares_reading_the_audio(small_data, monkeypatch, caplog):
    import os

    import vita_audio.data.cache as cache_mod

    root, wavs, _ = small_data
    build_cache(wavs[:8], EnergyTokenizer(), root / "c", "e", shard=0, num_shards=2)
    build_cache(wavs[:8], EnergyTokenizer(), root / "c", "e", shard=1, num_shards=2)
    assert sorted(p.name for p in (root / "c" / "e" / "manifest").iterdir()) == ["0-of-2.json", "1-of-2.json"]
    ref = {w: AudioCodeCache(root / "c", "e").get(w) for w in wavs[:8]}
    monkeypatch.setattr(cache_mod, "content_hash", _no_hashing)
    cache = AudioCodeCache(root / "c", "e")
    assert all(torch.equal(cache.get(w), ref[w]) for w in wavs[:8]) and cache.hash_report() is None
    rel = os.path.relpath(wavs[0])  # another spelling of the same file: the manifest holds absolute paths
    assert torch.equal(AudioCodeCache(root / "c", "e").get(rel), ref[wavs[0]])

    # a file the manifest does not know, or that changed since (new mtime), is hashed: counted and logged
    monkeypatch.undo()
    st = os.stat(wavs[1])
    os.utime(wavs[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same content
    cache = AudioCodeCache(root / "c", "e")
    with caplog.at_level("INFO", logger="vita_audio.data.cache"):
        assert torch.equal(cache.get(wavs[1]), ref[wavs[1]])  # same content: same entry
        with pytest.raises(CacheError, match="no cached codes"):
            cache.get(wavs[9])
    assert cache.hashed == {"changed since the manifest was written": 1, "not in the manifest": 1}
    assert "hashing audio files" in caplog.text and "python -m vita_audio.cli.tokenize" in cache.hash_report()

    # refilling refreshes the manifest; then nothing is read again
    build_cache(wavs, EnergyTokenizer(), root / "c", "e")
    monkeypatch.setattr(cache_mod, "content_hash", _no_hashing)
    cache = AudioCodeCache(root / "c", "e")
    assert all(cache.get(w).numel() for w in wavs) and not cache.hashed


def test_manifest_never_hides_an_edit(small_data):
    """An edited file has a new size or mtime: it is hashed again, so its old codes are never served."""
    root, wavs, _ = small_data
    build_cache(wavs, EnergyTokenizer(), root / "c", "e")
    write_wav(__import__("pathlib").Path(wavs[2]), 0.9, 333.0)
    cache = AudioCodeCache(root / "c", "e")
    with pytest.raises(CacheError, match="new or changed file"):
        cache.get(wavs[2])
    assert cache.hashed == {"changed since the manifest was written": 1}
