"""load_model (exported dir, Lightning .ckpt, bad paths), streamed speech == offline, the SpeechLM prompts."""

from __future__ import annotations

import shutil

import pytest
import torch

from tests.audio.conftest import TINY as TINY_CODEC
from tests.audio.conftest import speechlike
from tests.inference.conftest import N_MODULES, tiny_lm
from vita_audio.audio.builtin import BuiltinDetokenizer, BuiltinTokenizer
from vita_audio.audio.builtin.model import CodecModel
from vita_audio.audio.io import AudioError, write_audio
from vita_audio.checkpoint import export_pretrained
from vita_audio.inference import AudioChunk, Finished, SpeechLM, TextDelta, generate, load_model, stream
from vita_audio.inference.decoder import left_pad


@pytest.fixture(scope="module")
def exported(lm, tmp_path_factory):
    return export_pretrained(lm, tmp_path_factory.mktemp("hf"), interleave_ratio=[1, 2, 2, 4])


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return CodecModel(TINY_CODEC).eval()


def test_exported_dir_decodes_like_the_model_and_keeps_its_schedule(lm, exported, prompts):
    loaded = load_model(exported)
    assert loaded.generation_config.mtp_inference_mode == [1, 2, 2, 4]
    a = generate(lm, prompts, schedule=[1, 2, 2, 4], max_new_tokens=16, stop_ids=[])
    b = generate(loaded, prompts, max_new_tokens=16, stop_ids=[])  # the stored schedule by default
    assert b.schedule == [1, 2, 2, 4] and a.rows() == b.rows()


def test_lightning_checkpoint_loads(lm, tmp_path, prompts):
    from tests.conftest import TINY_CONFIG

    config = {"model": {"backbone": {"_target_": "vita_audio.model.backbone.Backbone", "audio_codebook_size": 32,
                                     "config": dict(TINY_CONFIG), "tokenizer": "tiny", "pretrained": None},
                        "mctp": {"_target_": "vita_audio.model.mctp.MCTPStack.for_backbone", "_partial_": True,
                                 "num_modules": N_MODULES}},
              "interleave": {"ratio": [1, 4]}}
    path = tmp_path / "final.ckpt"
    torch.save({"state_dict": {f"lm.{k}": v for k, v in lm.state_dict().items()},
                "hyper_parameters": {"config": config}}, path)
    loaded = load_model(path)
    assert loaded.generation_config.mtp_inference_mode == [1, 4]
    assert generate(loaded, prompts, max_new_tokens=12, stop_ids=[]).rows() == \
        generate(lm, prompts, schedule=[1, 4], max_new_tokens=12, stop_ids=[]).rows()


def test_bad_checkpoint_paths_are_clear_errors(exported, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(tmp_path / "empty")
    no_weights = tmp_path / "no_weights"
    shutil.copytree(exported, no_weights)
    for f in no_weights.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(FileNotFoundError, match="no weights"):
        load_model(no_weights)
    no_tok = tmp_path / "no_tok"
    shutil.copytree(exported, no_tok)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
                 "added_tokens.json"):
        (no_tok / name).unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        load_model(no_tok)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_model(junk)


def _speaking_lm():
    """A tiny model whose head favours the audio rows: its answers are mostly audio."""
    lm = tiny_lm(seed=3)
    av = lm.backbone.audio_vocab
    with torch.no_grad():
        lm.backbone.lm_head.weight[av.audio_offset:av.audio_end] *= 40.0
        lm.backbone.lm_head.weight[av.begin_of_audio] *= 40.0
    return lm


def test_streamed_audio_equals_offline_decode_of_the_same_codes(codec):
    lm = _speaking_lm()
    detok = BuiltinDetokenizer(codec)
    events = list(stream(lm, [5, 6, 7, 8], detok, schedule=[1, N_MODULES], max_new_tokens=40, stop_ids=[]))
    done = events[-1]
    assert isinstance(done, Finished) and all(not isinstance(e, Finished) for e in events[:-1])
    chunks = [e for e in events if isinstance(e, AudioChunk)]
    assert done.codes.numel() >= 20 and len(chunks) >= 3  # MCTP steps emit audio (restricted heads)
    streamed = torch.cat([c.wav for c in chunks])
    offline, sr = detok.decode(done.codes)
    assert sr == chunks[0].sample_rate
    torch.testing.assert_close(streamed, offline)
    torch.testing.assert_close(done.wav, offline)
    # the events carry exactly the generated tokens: text deltas spell the decoded non-audio tokens
    assert done.tokens == generate(lm, [[5, 6, 7, 8]], schedule=[1, N_MODULES], max_new_tokens=40,
                                   stop_ids=[]).rows()[0]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == done.text
    av = lm.backbone.audio_vocab
    text_ids = [t for t in done.tokens if not (av.audio_offset <= t < av.audio_end)
                and t not in (av.begin_of_audio, av.end_of_audio)]
    assert done.text == lm.backbone.tokenizer.decode(text_ids, skip_special_tokens=True)
    assert done.first_audio_s is not None and done.first_audio_s <= done.elapsed


def test_speechlm_prompts_and_bad_inputs(lm, codec, tmp_path):
    speech = SpeechLM(lm, BuiltinTokenizer(codec), BuiltinDetokenizer(codec))
    tok = lm.backbone.tokenizer
    tts = speech.prompt("tts", "Hello there.")
    assert tok.decode(tts) == "<|im_start|>user\nConvert the text to speech.\nHello there.<|im_end|>\n" \
                              "<|im_start|>assistant\n"
    wav_path = write_audio(tmp_path / "q.wav", torch.from_numpy(speechlike(1.0, seed=0)), 16000)
    asr = speech.prompt("asr", wav_path)
    av = lm.backbone.audio_vocab
    codes = BuiltinTokenizer(codec).encode(*_read(wav_path))
    start = asr.index(av.begin_of_audio)
    assert asr[start + 1 : start + 1 + codes.numel()] == (codes + av.audio_offset).tolist()
    assert tok.decode(asr[:start]).endswith("Convert the speech to text.\n")
    out = speech.run("asr", wav_path, schedule="vanilla", max_new_tokens=5, stop_ids=[])
    assert out.wav is None and len(out.tokens) == 5  # asr answers in text only
    with pytest.raises(AudioError, match="no such audio file"):
        speech.prompt("s2s", tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="unreadable"):
        speech.prompt("s2s", tmp_path / "empty.wav")
    with pytest.raises(ValueError, match="non-empty text"):
        speech.prompt("tts", "  ")
    with pytest.raises(ValueError, match="unknown task"):
        speech.prompt("translate", wav_path)
    with pytest.raises(ValueError, match="2048 codes"):
        SpeechLM(tiny_lm(), BuiltinTokenizer(CodecModel(type(TINY_CODEC)(codebook_size=2048))))


def _read(path):
    from vita_audio.audio.io import read_audio

    return read_audio(path, 16000)


def test_left_pad_keeps_rows_and_masks():
    ids, mask = left_pad([[4, 5, 6], [7]])
    assert ids.tolist() == [[4, 5, 6], [7, 7, 7]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids2, mask2 = left_pad(ids, mask)
    assert torch.equal(ids2, ids) and torch.equal(mask2, mask)
