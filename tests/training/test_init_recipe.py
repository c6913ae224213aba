"""The demo recipe's checkpoint hand-over: an MCTP stage initialised from a backbone-only SFT checkpoint (no MCTP
tensors at all) takes the SFT backbone unchanged and copies its last layer into module 0; the clone stage needs
that module 0 and says which stage makes it."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TEST_SIZE, compose_cfg
from tests.training.helpers import fit
from vita_audio.cli.common import build_model
from vita_audio.training.init import resolve_init_path

TINY = ["trainer=cpu", "model/backbone=tiny", "audio.codebook_size=64", "data=synthetic", *TEST_SIZE,
        "data.max_len=64", "model.backbone.dtype=float32"]


def test_mctp_stage_from_a_backbone_only_sft_checkpoint(tmp_path):
    sft_cfg = compose_cfg(tmp_path, ["+experiment=demo/sft", *TINY, "init_from=null", "trainer.fast_dev_run=true",
                                     "callbacks.publish_stage.force=true"])
    sft, _, _ = fit(sft_cfg)
    assert sft.num_mctp == 0
    cfg = compose_cfg(tmp_path, ["+experiment=demo/mctp_one", *TINY])
    published = tmp_path / "artifacts" / "stages" / "demo" / "sft" / "final.ckpt"
    assert cfg.init_from == str(published) and published.is_file()
    # PublishStage wrote final.ckpt and final.safetensors together: init reads the weights-only file
    assert resolve_init_path(published) == published.with_suffix(".safetensors")
    mctp = build_model(cfg)
    mctp.initialize(cfg.init_from, cfg.predecessor)
    want = sft.lm.backbone.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in mctp.lm.backbone.state_dict().items())
    last = sft.lm.backbone.layers[-1].state_dict()
    assert all(torch.equal(v, last[k]) for k, v in mctp.lm.mctp.layers[0].state_dict().items())

    clones = build_model(compose_cfg(tmp_path, ["+experiment=demo/mctp_all", *TINY]))
    with pytest.raises(ValueError, match=r"holds no trained MCTP module 0.*python train.py \+experiment=demo/mctp_one"):
        clones.initialize(str(published), "demo/mctp_one")


def test_unpaired_weights_file_says_why(tmp_path, monkeypatch, caplog):
    """A final.ckpt and final.safetensors without publish ids (an older version's stage) read the .ckpt and say so,
    not that the ids differ."""
    import vita_audio.training.init as init

    ckpt = tmp_path / "final.ckpt"
    ckpt.write_bytes(b"")
    ckpt.with_suffix(".safetensors").write_bytes(b"")
    monkeypatch.setattr(init, "_publish_id", lambda path: None)
    with caplog.at_level("WARNING", logger="vita_audio.training.init"):
        assert resolve_init_path(ckpt) == ckpt
    assert "no publish id in final.ckpt or final.safetensors, as in stages published by an older version" in caplog.text
    monkeypatch.setattr(init, "_publish_id", lambda path: path.suffix)
    caplog.clear()
    with caplog.at_level("WARNING", logger="vita_audio.training.init"):
        assert resolve_init_path(ckpt) == ckpt
    assert "(publish ids differ)" in caplog.text
