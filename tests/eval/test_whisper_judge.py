"""The Whisper judge from a local directory: a tiny random Whisper the test writes (model, feature extractor and a
byte-level BPE tokenizer with Whisper's timestamp tokens, built offline), loaded with transformers, nothing
downloaded. Its weights are drawn large, so what it emits depends on what it hears."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tests.audio.conftest import speechlike
from vita_audio.audio.io import AudioError
from vita_audio.cli.common import CONFIG_DIR

SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (the alphabet of a byte-level BPE vocabulary)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
          *range(ord("\u00ae"), ord("\u00ff") + 1)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_tiny_whisper(path) -> dict[str, int]:
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer)

    path.mkdir(parents=True, exist_ok=True)
    merges = ["\u0120 t", "h e", "\u0120t he"]
    vocab = {c: i for i, c in enumerate(byte_to_unicode().values())}
    for m in merges:
        vocab["".join(m.split())] = len(vocab)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = WhisperTokenizer(str(path / "vocab.json"), str(path / "merges.txt"), unk_token=SPECIALS[0],
                           bos_token=SPECIALS[0], eos_token=SPECIALS[0], pad_token=SPECIALS[0])
    tok.add_special_tokens({"additional_special_tokens": SPECIALS[1:]})
    tok.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(1501)])  # timestamps, as Whisper's: long-form needs them
    ids = dict(zip(SPECIALS, tok.convert_tokens_to_ids(SPECIALS)))
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tok).save_pretrained(path)
    eot = ids["<|endoftext|>"]
    cfg = WhisperConfig(vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                        num_mel_bins=80, max_source_positions=1500, max_target_positions=64, pad_token_id=eot,
                        bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=ids["<|startoftranscript|>"],
                        init_std=1.0)  # large random weights: what it emits depends on what it hears
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(cfg)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        lang_to_id={"<|en|>": ids["<|en|>"], "<|de|>": ids["<|de|>"]},
        task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"], is_multilingual=True, max_length=64)
    model.save_pretrained(path)
    return ids


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp("whisper") / "tiny-whisper"
    return path, write_tiny_whisper(path)


def test_whisper_judge_matches_transformers_generate(whisper_dir):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from vita_audio.eval.judges import WhisperJudge

    path, ids = whisper_dir
    judge = WhisperJudge(path, max_new_tokens=8, batch_size=2)
    wavs = [torch.from_numpy(speechlike(0.6, seed=i)) for i in range(3)]
    # the reference: transformers directly, at 16 kHz, English forced
    proc = WhisperProcessor.from_pretrained(path)
    model = WhisperForConditionalGeneration.from_pretrained(path).eval()
    feats = proc.feature_extractor([w.numpy() for w in wavs], sampling_rate=16000, return_tensors="pt").input_features
    ref_ids = model.generate(feats, language="en", task="transcribe", max_new_tokens=8, do_sample=False)
    ref = [t.strip() for t in proc.batch_decode(ref_ids, skip_special_tokens=True)]
    assert judge.transcribe_batch(wavs, 16000) == ref  # two batches (2 + 1) give the one-batch result
    assert judge.transcribe(wavs[0], 16000) == ref[0]
    # 24 kHz input is resampled to the 16 kHz the model hears
    from vita_audio.audio.io import resample

    wav24 = resample(wavs[1], 16000, 24000)
    assert judge.transcribe(wav24, 24000) == judge.transcribe(resample(wav24, 24000, 16000), 16000)
    with pytest.raises(AudioError, match="silent"):
        judge.transcribe(torch.zeros(16000), 16000)


def test_whisper_judge_hears_past_30_seconds(whisper_dir, monkeypatch):
    """Two 45-s clips equal for 30 s and different after: a judge that cuts at 30 s hears them the same."""
    from vita_audio.eval.judges import WhisperJudge

    path, _ = whisper_dir
    judge = WhisperJudge(path, max_new_tokens=8, batch_size=4)
    head = speechlike(30.0, seed=1)
    a = torch.from_numpy(np.concatenate([head, speechlike(15.0, seed=2)]))
    b = torch.from_numpy(np.concatenate([head, speechlike(15.0, seed=7)]))
    heard_a, heard_b = judge.transcribe(a, 16000), judge.transcribe(b, 16000)
    assert heard_a != heard_b
    assert judge.transcribe(a[: 30 * 16000], 16000) == judge.transcribe(b[: 30 * 16000], 16000)  # the premise
    frames = []
    generate = judge.model.generate

    def spy(feats, **kwargs):
        frames.append(feats.shape[-1])
        return generate(feats, **kwargs)

    monkeypatch.setattr(judge.model, "generate", spy)
    short = torch.from_numpy(speechlike(2.0, seed=3))
    heard_short = judge.transcribe(short, 16000)
    frames.clear()
    # short clips batched apart from the long ones, the transcripts in the order of the input
    assert judge.transcribe_batch([short, a, short, b], 16000) == [heard_short, heard_a, heard_short, heard_b]
    assert frames == [3000, 4500]  # one 30-s window per short clip; every frame of the long ones


def test_whisper_judge_forces_the_language(whisper_dir, monkeypatch):
    from vita_audio.eval.judges import WhisperJudge

    path, _ = whisper_dir
    judge = WhisperJudge(path, language="de", max_new_tokens=4)
    seen = {}
    generate = judge.model.generate

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return generate(*args, **kwargs)

    monkeypatch.setattr(judge.model, "generate", spy)
    judge.transcribe(torch.from_numpy(speechlike(0.5, seed=0)), 16000)
    assert seen["language"] == "de" and seen["task"] == "transcribe" and seen["return_timestamps"] is False


def test_whisper_judge_bad_directory(tmp_path):
    from vita_audio.eval.judges import WhisperJudge

    with pytest.raises(FileNotFoundError, match="not a directory.*nothing is downloaded"):
        WhisperJudge(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="lacks config.json"):
        WhisperJudge(tmp_path / "empty")


def test_judge_config_group(whisper_dir):
    path, _ = whisper_dir
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="eval", overrides=["task=tts", "ckpt_path=x", "judge=whisper",
                                                     f"judge.path={path}", "judge.max_new_tokens=4"])
        assert type(instantiate(cfg.judge)).__name__ == "WhisperJudge"
        default = compose(config_name="eval", overrides=["task=tts", "ckpt_path=x"])
        assert default.judge._target_.endswith("PocketSphinxJudge")
        with pytest.raises(Exception, match="judge"):  # Hydra lists the available judges
            compose(config_name="eval", overrides=["task=tts", "ckpt_path=x", "judge=nonesuch"])
