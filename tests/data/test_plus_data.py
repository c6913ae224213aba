"""Plus data path: the encoder-feature cache and Plus batches (input audio as frames, output audio as codes)."""

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import TINY_CONFIG
from tests.fakes import EnergyTokenizer
from vita_audio.audio.encoders import tiny_sensevoice
from vita_audio.data.cache import CacheError, build_cache
from vita_audio.data.datamodule import VitaDataModule
from vita_audio.data.feature_cache import (
    AudioFeatureCache,
    audio_roles,
    build_feature_cache,
    feature_namespace,
)
from vita_audio.model.backbone import Backbone
from vita_audio.model.loss import IGNORE_INDEX

SR = 16000


@pytest.fixture(scope="module")
def encoder():
    return tiny_sensevoice(output_size=32, linear_units=32, num_blocks=1, tp_blocks=1)


@pytest.fixture(scope="module")
def backbone():
    return Backbone(64, config=dict(TINY_CONFIG), tokenizer="tiny", special_tokens="audio_markers_plus")


def write_wav(path, seconds, freq):
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR)
    return str(path)


@pytest.fixture
def dataset(tmp_path):
    """ASR (user audio), TTS (assistant audio) and speech QA (both) records, with their wavs."""
    a = write_wav(tmp_path / "q.wav", 0.8, 300)
    b = write_wav(tmp_path / "ans.wav", 0.6, 500)
    c = write_wav(tmp_path / "q2.wav", 1.3, 700)
    recs = [
        {"messages": [{"role": "user", "content": "Convert the speech to text.\n<|audio|>"},
                      {"role": "assistant", "content": "hello"}], "audios": [a]},
        {"messages": [{"role": "user", "content": "Convert the text to speech.\nhello"},
                      {"role": "assistant", "content": "<|audio|>"}], "audios": [b]},
        {"messages": [{"role": "user", "content": "<|audio|>"},
                      {"role": "assistant", "content": "fine\n<|audio|>"}], "audios": [c, b]},
    ]
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in recs))
    cache = tmp_path / "cache"
    build_cache([a, b, c], EnergyTokenizer(codebook_size=64), cache, "builtin", progress=False)
    return jsonl, cache, {"q": a, "ans": b, "q2": c}


def test_audio_roles():
    assert audio_roles([("system", "x"), ("user", "<|audio|> and <|audio|>"), ("assistant", "<|audio|>")]) == \
        ["user", "user", "assistant"]


def test_feature_cache_round_trip_and_identity(tmp_path, encoder):
    p = write_wav(tmp_path / "a.wav", 0.5, 440)
    stats = build_feature_cache([p], encoder, tmp_path / "c")
    assert stats == {"total": 1, "encoded": 1, "cached": 0, "failed": 0}
    assert build_feature_cache([p], encoder, tmp_path / "c")["cached"] == 1  # the encoder runs once per file
    name = feature_namespace(encoder.identity)
    cache = AudioFeatureCache(tmp_path / "c", name, encoder.identity, encoder.dim)
    frames = cache.get(p)
    want = encoder.encode(torch.from_numpy(sf.read(p, dtype="float32")[0]), SR)
    assert frames.shape == want.shape and torch.allclose(frames, want, atol=2e-2, rtol=1e-2)  # stored as float16
    # renaming keeps the entry (content keys); another encoder or width is refused
    (tmp_path / "a.wav").rename(tmp_path / "b.wav")
    assert torch.equal(cache.get(tmp_path / "b.wav"), frames)
    with pytest.raises(CacheError, match="filled by"):
        AudioFeatureCache(tmp_path / "c", name, "another-encoder").meta()
    with pytest.raises(CacheError, match="expects 16"):
        AudioFeatureCache(tmp_path / "c", name, encoder.identity, 16).meta()
    with pytest.raises(CacheError, match="not encoder"):
        build_feature_cache([p], tiny_sensevoice(seed=9), tmp_path / "c", name)
    build_cache([str(tmp_path / "b.wav")], EnergyTokenizer(codebook_size=64), tmp_path / "c", "builtin",
                progress=False)
    with pytest.raises(CacheError, match="audio codes, not encoder features"):
        AudioFeatureCache(tmp_path / "c", "builtin").meta()


def test_plus_batches_hold_frames_for_inputs_and_codes_for_outputs(dataset, encoder, backbone):
    jsonl, cache, wavs = dataset
    dm = VitaDataModule(backbone.tokenizer, backbone.audio_vocab, [str(jsonl)], max_len=256, batch_size=4,
                        cache_dir=str(cache), audio_encoder=encoder, shuffle=False, interleave_ratio=[1, 10, 4, 10])
    dm.setup("fit")
    assert dm.audio_encoder is None  # dropped once the cache is filled
    batches = list(dm.train_dataloader())
    v = backbone.audio_vocab
    n_ctx = sum(int((b["input_ids"] == v.context).sum()) for b in batches)
    frames = sum(b["audio_features"].shape[0] for b in batches)
    want = sum(encoder.num_frames(int(sf.info(wavs[k]).frames)) for k in ("q", "q2"))
    assert n_ctx == frames == want  # one placeholder per encoder frame of each *input* audio only
    for b in batches:
        assert b["audio_features"].shape[1] == 32 and b["audio_features"].dtype == torch.float32
        assert bool((b["labels"][b["input_ids"] == v.context] == IGNORE_INDEX).all())
        # output audio (TTS and the spoken answer) stays discrete codes, supervised
        assert bool(v.is_audio(b["labels"]).any())
    # the batch frames are the cached frames of the two input audios (the order is the packer's)
    fc = dm._feature_cache
    got = torch.cat([b["audio_features"] for b in batches])
    want = torch.cat([fc.get(wavs["q"]), fc.get(wavs["q2"])])
    assert sorted(got.sum(1).tolist()) == pytest.approx(sorted(want.sum(1).tolist()))


def test_a_missing_feature_entry_is_an_error_or_a_counted_skip(dataset, encoder, backbone):
    jsonl, cache, _ = dataset
    kw = dict(max_len=256, batch_size=2, cache_dir=str(cache), audio_encoder=encoder, fill_features=False)
    with pytest.raises(CacheError, match="meta.json missing"):
        VitaDataModule(backbone.tokenizer, backbone.audio_vocab, [str(jsonl)], **kw).setup("fit")
    build_feature_cache([], encoder, cache)  # an empty namespace of the right encoder: every input audio missing
    dm = VitaDataModule(backbone.tokenizer, backbone.audio_vocab, [str(jsonl)], on_error="skip", **kw)
    dm.setup("fit")
    assert dm.skip_counts() == {"cache_missing": 2} and len(dm.train_set.store.records) == 1  # the TTS record


def test_plus_needs_the_plus_vocabulary(encoder):
    bb = Backbone(64, config=dict(TINY_CONFIG), tokenizer="tiny")
    with pytest.raises(ValueError, match="context_of_audio"):
        VitaDataModule(bb.tokenizer, bb.audio_vocab, [], audio_encoder=encoder)


def test_frame_count_formula(encoder):
    for n in (400, 16000, 16000 * 3 + 123):
        assert encoder.num_frames(n) == 4 + math.ceil((1 + (n - 400) // 160) / 6)


class CountingEncoder:
    """Delegates to an encoder, counting `encode` calls."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, wav, sample_rate):
        self.calls += 1
        return self.inner.encode(wav, sample_rate)


def test_the_encoder_runs_once_per_input_file(dataset, encoder, backbone):
    jsonl, cache, _ = dataset
    kw = dict(max_len=256, batch_size=2, cache_dir=str(cache))
    first = CountingEncoder(encoder)
    dm = VitaDataModule(backbone.tokenizer, backbone.audio_vocab, [str(jsonl)], [str(jsonl)], audio_encoder=first, **kw)
    dm.prepare_data()
    dm.setup("fit")
    assert first.calls == 2  # q.wav and q2.wav (train and val share them); the TTS answer stays codes
    again = CountingEncoder(encoder)  # a later run (next stage, next epoch's process) reads the cache only
    dm2 = VitaDataModule(backbone.tokenizer, backbone.audio_vocab, [str(jsonl)], audio_encoder=again, **kw)
    dm2.setup("fit")
    assert again.calls == 0 and len(list(dm2.train_dataloader())) >= 1


def test_feature_namespaces_of_different_identities_never_merge():
    """`a/b` and `a_b` are one name after the character replacement; the namespace must still tell them apart."""
    assert feature_namespace("enc/a_b") != feature_namespace("enc_a/b")
    assert feature_namespace("x") == feature_namespace("x")
