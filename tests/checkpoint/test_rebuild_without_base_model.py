"""A training checkpoint whose backbone came from a base-model directory (`pretrained:`) loads on a machine that
never had that directory: the backbone's HF config and the extended tokenizer are stored with it."""

from __future__ import annotations

import shutil

import pytest
import torch

from tests.checkpoint.conftest import CODEBOOK, record_of, training_config, write_ckpt, write_weights
from tests.conftest import TINY_CONFIG
from vita_audio.checkpoint import load_model
from vita_audio.model.backbone import Backbone
from vita_audio.model.lm import VitaAudioLM
from vita_audio.model.mctp import MCTPStack


def _from_base_dir(tmp_path):
    base = tmp_path / "Qwen-base"
    Backbone(CODEBOOK, config=dict(TINY_CONFIG), tokenizer="tiny").save_pretrained(base)  # a local HF checkpoint
    bb = Backbone(CODEBOOK, pretrained=str(base))
    torch.manual_seed(0)
    return base, VitaAudioLM(bb, MCTPStack.for_backbone(bb, 2)).eval()


def test_ckpt_loads_without_the_pretrained_directory(tmp_path):
    base, lm = _from_base_dir(tmp_path)
    config = training_config(2, [1, 2], pretrained=str(base))
    ckpt = write_ckpt(tmp_path / "final.ckpt", lm, config, record_of(lm))
    weights = write_weights(tmp_path / "final.safetensors", lm, config, record_of(lm))
    shutil.rmtree(base)  # the training machine's directory is not here
    ids = torch.randint(0, lm.backbone.vocab_size, (1, 9))
    for path in (ckpt, weights):
        loaded = load_model(path)
        assert loaded.backbone.tokenizer.get_vocab() == lm.backbone.tokenizer.get_vocab()
        assert loaded.backbone.audio_vocab == lm.backbone.audio_vocab
        with torch.no_grad():
            torch.testing.assert_close(loaded(ids)[0], lm(ids)[0], rtol=0, atol=0)


def test_an_older_ckpt_without_the_record_is_a_clear_error(tmp_path):
    base, lm = _from_base_dir(tmp_path)
    ckpt = write_ckpt(tmp_path / "old.ckpt", lm, training_config(2, [1, 2], pretrained=str(base)), None)
    # even with the directory present: inference never reads the training machine's base model
    with pytest.raises(ValueError, match=r"written before checkpoints carried the backbone's config.*Qwen-base"):
        load_model(ckpt)
