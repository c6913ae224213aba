"""`audio=glm4voice` end to end: a published-layout VITA-Audio directory (tiny, 16384 audio codes) + tiny
glm-4-voice-tokenizer / glm-4-voice-decoder directories -> speech in, tokens, speech out at 22,050 Hz."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tests.conftest import TINY_CONFIG
from vita_audio.audio.glm4voice import Glm4VoiceDetokenizer, Glm4VoiceTokenizer
from vita_audio.audio.io import write_audio
from vita_audio.checkpoint import export_pretrained
from vita_audio.cli.common import CONFIG_DIR
from vita_audio.cli.infer import infer
from vita_audio.model.backbone import Backbone
from vita_audio.model.lm import VitaAudioLM
from vita_audio.model.mctp import MCTPStack

from .conftest import speechlike
from .glm4voice_fixtures import write_tiny_decoder, write_tiny_tokenizer


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("glm_e2e")
    ckpts = root / "checkpoints"
    write_tiny_tokenizer(ckpts / "glm-4-voice-tokenizer")
    write_tiny_decoder(ckpts / "glm-4-voice-decoder")
    bb = Backbone(16384, config=dict(TINY_CONFIG), tokenizer="tiny", seed=0)
    torch.manual_seed(0)
    lm = VitaAudioLM(bb, MCTPStack.for_backbone(bb, 2)).eval()
    vita = export_pretrained(lm, root / "VITA-Audio-Boost", interleave_ratio=[1, 2])
    wav = write_audio(root / "question.wav", torch.from_numpy(speechlike(2.0, seed=9)), 16000)
    return root, ckpts, vita, wav


def _cfg(root, ckpts, overrides):
    base = [f"paths.root_dir={root}", f"paths.checkpoints_dir={ckpts}", "audio=glm4voice", "stop_ids=[]",
            "max_new_tokens=30", "sampling.do_sample=false", "audio.detokenizer.n_timesteps=2"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="infer", overrides=[*base, *overrides])
    out = root / "out" / overrides[0].split("=")[1]
    out.mkdir(parents=True)
    cfg.paths.output_dir = str(out)
    return cfg, out


def test_audio_group_instantiates_both_components(setup):
    root, ckpts, _, _ = setup
    cfg, _ = _cfg(root, ckpts, ["task=tts", "ckpt_path=x", "input=x"])
    assert cfg.audio.codebook_size == 16384 and cfg.audio.frame_rate == 12.5
    tok, det = instantiate(cfg.audio.tokenizer), instantiate(cfg.audio.detokenizer)
    assert isinstance(tok, Glm4VoiceTokenizer) and isinstance(det, Glm4VoiceDetokenizer)
    assert det.sample_rate == 22050 and det.chunk_tokens == 10 and det.n_timesteps == 2


def test_missing_weights_say_where_to_put_them(setup, tmp_path):
    root, _, _, _ = setup
    cfg, _ = _cfg(root, tmp_path / "empty", ["task=asr", "ckpt_path=x", "input=x"])
    with pytest.raises(Exception, match="glm-4-voice-tokenizer"):
        instantiate(cfg.audio.tokenizer)


def test_speech_in_speech_out_from_a_published_directory(setup):
    root, ckpts, vita, wav = setup
    cfg, out = _cfg(root, ckpts, ["task=s2s", f"ckpt_path={vita}", f"input={wav}"])
    result = infer(cfg)
    info = json.loads((out / "result.json").read_text())
    assert info["new_tokens"] == 30 and len(result.tokens) == 30
    # the prompt held the question's GLM-4-Voice codes (2 s -> 25) and random weights answer with audio codes
    assert info["audio_codes"] == result.codes.numel() > 0
    assert int(result.codes.max()) < 16384
    data, sr = sf.read(out / "answer.wav")
    assert sr == 22050 and len(data) == result.wav.numel() == 256 * int(result.codes.numel() / 12.5 * 22050 / 256)
    # the streamed answer equals an offline decode of its codes
    det = instantiate(cfg.audio.detokenizer)
    assert torch.equal(det.decode(result.codes)[0], result.wav)


def test_tokenize_cli_fills_the_cache_with_glm4voice_codes(setup, tmp_path):
    """`python -m vita_audio.cli.tokenize --audio glm4voice`: batched GLM-4-Voice codes in the cache namespace."""
    from vita_audio.cli.tokenize import main
    from vita_audio.data.cache import AudioCodeCache

    root, ckpts, _, _ = setup
    wavs = [write_audio(tmp_path / f"a{i}.wav", torch.from_numpy(speechlike(s, seed=20 + i)), 16000)
            for i, s in enumerate((0.7, 1.9, 1.2))]
    jsonl = tmp_path / "asr.jsonl"
    jsonl.write_text("".join(json.dumps({"messages": [{"role": "user", "content": "Convert the speech to text.\n"
                                                       "<|audio|>"}, {"role": "assistant", "content": "x"}],
                                         "audios": [str(w)]}) + "\n" for w in wavs))
    cache_dir = tmp_path / "cache"
    stats = main(["--data", "corpus", "--audio", "glm4voice", "--no-sources", "--jsonl", str(jsonl),
                  f"paths.root_dir={root}", f"paths.checkpoints_dir={ckpts}", f"paths.cache_dir={cache_dir}"])
    assert stats["encoded"] == 3
    tok = Glm4VoiceTokenizer(ckpts / "glm-4-voice-tokenizer")
    cache = AudioCodeCache(cache_dir, "glm4voice", codebook_size=16384, expected_identity=tok.identity)
    for w in wavs:
        data, sr = sf.read(w, dtype="float32")
        assert torch.equal(cache.get(w), tok.encode(torch.from_numpy(data), sr))


def test_7b_recipe_composes_with_the_reference_vocabulary(tmp_path):
    """`train.py +experiment=qwen2_5_7b/boost_stage1 audio=glm4voice`: 16384 audio codes for the backbone (the
    reference vocabulary, <|audio_0|> = 151685 on Qwen2.5: tests/model/test_vocab.py) and the glm4voice cache."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["+experiment=qwen2_5_7b/boost_stage1", "audio=glm4voice",
                                                      f"paths.root_dir={tmp_path}"])
    assert cfg.model.backbone.audio_codebook_size == 16384
    assert cfg.data.cache_name == "glm4voice"
    assert cfg.audio.tokenizer.path == f"{tmp_path}/checkpoints/glm-4-voice-tokenizer"
