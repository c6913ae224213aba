"""conf/audio/builtin.yaml and conf/train_codec.yaml compose and instantiate; the CLI trains and skips."""

import json

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tests.conftest import compose_cfg
from vita_audio.cli.common import CONFIG_DIR
from vita_audio.audio.builtin import BuiltinDetokenizer, BuiltinTokenizer, CodecConfig, TrainArgs
from vita_audio.cli.train_codec import run

def compose_codec(tmp_path, overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train_codec", overrides=[f"paths.root_dir={tmp_path}", *overrides])


TINY_OVERRIDES = ["audio.codebook_size=32", "codec.latent_dim=8", "codec.enc_channels=16", "codec.enc_blocks=1",
                  "codec.dec_channels=16", "codec.dec_blocks=1", "codec.gl_iters=2", "train.steps=3",
                  "train.batch_size=2", "train.crop_tokens=4", "train.warmup_steps=1"]


def test_audio_group_instantiates_the_codec(tmp_path, codec_dir):
    cfg = compose_cfg(tmp_path, [f"paths.codec_dir={codec_dir}", "audio.codebook_size=32"])
    assert cfg.audio.frame_rate == 25.0 and cfg.audio.sample_rate == 16000
    tok, det = instantiate(cfg.audio.tokenizer), instantiate(cfg.audio.detokenizer)
    assert isinstance(tok, BuiltinTokenizer) and isinstance(det, BuiltinDetokenizer)
    assert tok.codebook_size == det.codebook_size == 32


def test_audio_group_rejects_a_codec_with_another_codebook(tmp_path, codec_dir):
    cfg = compose_cfg(tmp_path, [f"paths.codec_dir={codec_dir}"])  # the default 2048 vs the tiny codec's 32
    with pytest.raises(Exception, match="codec has 32 codes but the config expects 2048"):
        instantiate(cfg.audio.tokenizer)


def test_default_codec_config_matches_the_audio_group(tmp_path):
    cfg = compose_codec(tmp_path, [])
    codec = instantiate(cfg.codec)
    assert isinstance(codec, CodecConfig) and codec == CodecConfig()  # yaml and dataclass defaults agree
    assert isinstance(instantiate(cfg.train), TrainArgs) and instantiate(cfg.train) == TrainArgs()
    assert codec.codebook_size == cfg.audio.codebook_size and codec.frame_rate == cfg.audio.frame_rate


def test_cli_trains_then_skips(tmp_path, wav_dir):
    out = tmp_path / "codec"
    cfg = compose_codec(tmp_path, [f"wavs={wav_dir}", f"out_dir={out}", *TINY_OVERRIDES])
    assert run(cfg) == out
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    run(cfg)
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    assert json.loads((out / "config.json").read_text())["codebook_size"] == 32
    bad = compose_codec(tmp_path, [f"wavs={wav_dir}", f"out_dir={out}", "codec.frames_per_token=8", *TINY_OVERRIDES])
    with pytest.raises(ValueError, match="12.5 tokens/s but audio.frame_rate is 25"):
        run(bad)
