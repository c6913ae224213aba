"""Audio-token cache: fill, resume after an interruption, idempotent, stale/missing entries are clear errors."""

from __future__ import annotations

import pytest

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
    import torch

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
    with pytest.raises(CacheError, match="python -m vita_audio.data.tokenize"):
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
