import json
import math
import time

import pytest
import torch

from vita_audio.audio.builtin import (BuiltinDetokenizer, BuiltinTokenizer, CodecConfig, collect_wavs, load_codec,
                                      save_codec, train_codec)
from vita_audio.audio.builtin.model import CodecModel
from vita_audio.audio.interface import AudioDetokenizer, AudioTokenizer
from vita_audio.audio.io import AudioError, read_audio

from .conftest import TINY, TINY_ARGS, speechlike


def test_config_defaults_and_validation():
    c = CodecConfig()
    assert c.frame_rate == 25.0 and c.samples_per_token == 640 and c.n_bins == 321
    assert CodecConfig(frames_per_token=8).frame_rate == 12.5
    with pytest.raises(ValueError, match="above the 50/s"):
        CodecConfig(frames_per_token=1)
    with pytest.raises(ValueError, match="codebook_size"):
        CodecConfig(codebook_size=32768)
    with pytest.raises(ValueError, match="unknown codec config keys"):
        CodecConfig.from_dict({"codebook_size": 8, "bogus": 1})


def test_checkpoint_layout(codec_dir):
    assert {p.name for p in codec_dir.iterdir()} >= {"config.json", "model.safetensors", "training.json"}
    assert json.loads((codec_dir / "config.json").read_text())["codebook_size"] == TINY.codebook_size
    info = json.loads((codec_dir / "training.json").read_text())
    assert info["finished"] and info["files"] == 4 and info["skipped"] == 0


@pytest.mark.parametrize("seconds", [0.01, 0.04, 0.041, 1.0, 1.23])
def test_frame_rate_arithmetic_and_code_range(codec, seconds):
    tok = BuiltinTokenizer(codec)
    assert isinstance(tok, AudioTokenizer) and tok.frame_rate == 25.0 and tok.sample_rate == 16000
    wav = torch.from_numpy(speechlike(seconds, seed=7))
    codes = tok.encode(wav, 16000)
    assert codes.dtype == torch.long and codes.dim() == 1
    assert codes.numel() == max(1, math.ceil(seconds * tok.frame_rate - 1e-9))
    assert 0 <= int(codes.min()) and int(codes.max()) < tok.codebook_size
    det = BuiltinDetokenizer(codec)
    assert isinstance(det, AudioDetokenizer)
    y, sr = det.decode(codes)
    assert sr == 16000 and y.shape == (codes.numel() * 640,) and y.abs().max() <= 1.0


def test_other_sample_rates_are_resampled(codec):
    tok = BuiltinTokenizer(codec)
    wav16 = torch.from_numpy(speechlike(1.0, seed=3))
    from vita_audio.audio.io import resample
    codes22 = tok.encode(resample(wav16, 16000, 22050), 22050)
    codes16 = tok.encode(wav16, 16000)
    assert codes22.numel() == codes16.numel() == 25
    assert (codes22 == codes16).float().mean() > 0.6  # nearly the same tokens


def test_determinism_and_batch(codec, codec_dir):
    tok, det = BuiltinTokenizer(codec), BuiltinDetokenizer(codec)
    wavs = [torch.from_numpy(speechlike(s, seed=i)) for i, s in enumerate([0.5, 0.8])]
    a = tok.encode_batch(wavs, 16000)
    b = [tok.encode(w, 16000) for w in wavs]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    # decode is a function of the codes and the weights only: a detokenizer loaded on its own from the checkpoint
    # files gives the same samples, and other codes give other samples (the output is not a constant)
    y = det.decode(a[0])[0]
    assert torch.equal(y, BuiltinDetokenizer(codec_dir).decode(a[0])[0])
    other = det.decode((a[0] + 1) % tok.codebook_size)[0]
    assert other.shape == y.shape and (other - y).abs().max() > 1e-3


def test_loudness_invariance(codec):
    tok = BuiltinTokenizer(codec)
    w = torch.from_numpy(speechlike(1.0, seed=5))
    assert torch.equal(tok.encode(w, 16000), tok.encode(0.1 * w, 16000))


def test_save_load_roundtrip(codec, codec_dir, tmp_path):
    save_codec(codec, tmp_path / "copy")
    again = load_codec(tmp_path / "copy")
    w = torch.from_numpy(speechlike(0.7, seed=9))
    c1, c2 = BuiltinTokenizer(codec).encode(w, 16000), BuiltinTokenizer(again).encode(w, 16000)
    assert torch.equal(c1, c2)
    assert torch.equal(BuiltinDetokenizer(codec).decode(c1)[0], BuiltinDetokenizer(again).decode(c1)[0])
    # identity: a function of the weights, not of the path (the original and its copy in another directory agree),
    # and a change of one weight changes it
    assert BuiltinTokenizer(tmp_path / "copy").identity == BuiltinTokenizer(codec_dir).identity
    assert BuiltinTokenizer(tmp_path / "copy").identity.startswith("builtin-25hz-32-")
    nudged = load_codec(codec_dir)
    with torch.no_grad():
        next(nudged.parameters()).view(-1)[0] += 1e-3
    save_codec(nudged, tmp_path / "nudged")
    assert BuiltinTokenizer(tmp_path / "nudged").identity != BuiltinTokenizer(codec_dir).identity
    other = CodecModel(TINY)
    save_codec(other, tmp_path / "other")
    assert BuiltinTokenizer(tmp_path / "other").identity != BuiltinTokenizer(tmp_path / "copy").identity


def test_codebook_and_rate_mismatch_are_clear_errors(codec_dir, tmp_path):
    with pytest.raises(ValueError, match="codec has 32 codes but the config expects 1024"):
        BuiltinTokenizer(codec_dir, expected_codebook_size=1024)
    with pytest.raises(ValueError, match="25 tokens/s but the config expects 12.5"):
        BuiltinDetokenizer(codec_dir, expected_frame_rate=12.5)
    assert BuiltinDetokenizer(codec_dir, expected_codebook_size=32, expected_frame_rate=25.0).codebook_size == 32
    with pytest.raises(FileNotFoundError, match="missing config.json.*train_codec"):
        load_codec(tmp_path)


def test_bad_inputs(codec):
    tok, det = BuiltinTokenizer(codec), BuiltinDetokenizer(codec)
    with pytest.raises(AudioError, match="silent"):
        tok.encode(torch.zeros(16000), 16000)
    with pytest.raises(AudioError, match="NaN"):
        tok.encode(torch.full((1600,), float("nan")), 16000)
    with pytest.raises(AudioError, match="empty"):
        tok.encode(torch.zeros(0), 16000)
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 32\)"):
        det.decode(torch.tensor([0, 32]))
    y, _ = det.decode(torch.zeros(0, dtype=torch.long))
    assert y.numel() == 0


def test_collect_wavs(wav_dir, tmp_path):
    paths = collect_wavs(wav_dir)
    assert len(paths) == 4
    jl = tmp_path / "d.jsonl"
    jl.write_text("\n".join(json.dumps({"messages": [], "audios": [str(p)]}) for p in paths) + "\n")
    assert collect_wavs(jl) == paths
    with pytest.raises(ValueError, match="expected a directory"):
        collect_wavs(tmp_path / "x.txt")


def test_training_skips_a_finished_identical_run(codec_dir, wav_dir):
    before = (codec_dir / "model.safetensors").stat().st_mtime_ns
    t = time.time()
    assert train_codec(wav_dir, codec_dir, TINY, TINY_ARGS) == codec_dir
    assert time.time() - t < 5 and (codec_dir / "model.safetensors").stat().st_mtime_ns == before


def test_training_counts_and_skips_bad_files(wav_dir, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    out = train_codec(sorted(wav_dir.glob("*.wav"))[:2] + [bad], tmp_path / "c", TINY,
                      type(TINY_ARGS)(steps=2, batch_size=2, crop_tokens=4, warmup_steps=1, num_threads=1))
    assert json.loads((out / "training.json").read_text())["skipped"] == 1


def test_codes_reproduce_speech_better_than_chance(codec, wav_dir):
    """Even the few-step tiny codec must track the input: its decoded spectrum correlates with the original."""
    from vita_audio.audio.builtin.features import Features
    tok, det = BuiltinTokenizer(codec), BuiltinDetokenizer(codec)
    w, sr = read_audio(sorted(wav_dir.glob("*.wav"))[0])
    y, _ = det.decode(tok.encode(w, sr))
    f = Features(codec.cfg)
    env = lambda x: f.log_mag(f.magnitude(x[None]))[0].mean(1)  # (F,) loudness contour
    a, b = env(w[: y.numel()]), env(y[: w.numel()])
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.5
