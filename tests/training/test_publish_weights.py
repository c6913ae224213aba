"""Published stages: weights-only safetensors read lazily by the next stage; old full .ckpt init still works."""

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from tests.training.helpers import fit, logits
from vita_audio.cli.common import build_model
from vita_audio.model.backbone import Backbone
from vita_audio.training.init import initialize_from_checkpoint, resolve_init_path

STAGE1 = ["+experiment=boost_stage1", "data=synthetic", "audio.codebook_size=64", "trainer.max_steps=2",
          "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "callbacks.publish_stage.export=false",
          "callbacks.model_checkpoint.every_n_train_steps=2"]
STAGE2 = ["+experiment=boost_stage2", "data=synthetic", "audio.codebook_size=64", "trainer.max_steps=1",
          "trainer.limit_val_batches=0", "callbacks.publish_stage.export=false"]


@pytest.fixture
def published(make_cfg, tmp_path):
    cfg = make_cfg(STAGE1)
    model, trainer, _ = fit(cfg)
    stage = Path(cfg.callbacks.publish_stage.dirpath)
    full = tmp_path / "full.ckpt"  # what PublishStage wrote before: a whole training checkpoint
    trainer.save_checkpoint(full, weights_only=False)
    return model, stage, full


def test_publish_writes_weights_only_files(published):
    model, stage, full = published
    weights, ckpt = stage / "final.safetensors", stage / "final.ckpt"
    with safe_open(str(weights), framework="pt") as f:
        assert set(f.keys()) == set(model.state_dict())
        config = json.loads(f.metadata()["config"])
        assert config["run_name"] == "boost_stage1"
        torch.testing.assert_close(f.get_tensor("lm.backbone.model.lm_head.weight"),
                                   model.state_dict()["lm.backbone.model.lm_head.weight"], rtol=0, atol=0)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert "optimizer_states" not in saved and "config" in saved["hyper_parameters"]  # eval.py / infer.py read it
    assert "optimizer_states" in torch.load(full, map_location="cpu", weights_only=True)
    # AdamW keeps two moments per parameter: the weights-only file is about a third of the full checkpoint
    assert weights.stat().st_size < 0.45 * full.stat().st_size


def test_next_stage_same_first_loss_from_weights_or_full_checkpoint(published, make_cfg, tmp_path):
    _, stage, full = published
    runs = {}
    for name, init in [("weights", stage / "final.safetensors"), ("full", full), ("published", stage / "final.ckpt")]:
        cfg = make_cfg([*STAGE2, f"init_from={init}", f"paths.output_dir={tmp_path / name}",
                        f"callbacks.publish_stage.dirpath={tmp_path / name / 'pub'}"])
        model, _, losses = fit(cfg)
        runs[name] = (losses[0], model)
    assert runs["weights"][0] == runs["full"][0] == runs["published"][0]
    torch.testing.assert_close(logits(runs["weights"][1]), logits(runs["full"][1]), rtol=0, atol=0)


def test_init_path_resolution(published, tmp_path):
    _, stage, full = published
    ckpt, weights = stage / "final.ckpt", stage / "final.safetensors"
    assert resolve_init_path(ckpt) == weights  # published together: the same publish id in both
    assert resolve_init_path(full) == full  # any other .ckpt is read as given
    os.utime(ckpt, (ckpt.stat().st_mtime + 60,) * 2)  # mtimes do not matter (cp without -p, a touch)
    assert resolve_init_path(ckpt) == weights
    # a stale weights file beside the .ckpt (another publish, or an older .ckpt copied in with `cp -p`), newer than
    # the .ckpt: not paired, whatever the mtimes say
    from vita_audio.checkpoint import open_checkpoint
    from vita_audio.checkpoint.weights import save_weights_file

    stored = open_checkpoint(weights)
    record = dict(stored.record, publish_id="another-publish")
    save_weights_file(stored.module_tensors(), tmp_path / "stale.safetensors", stored.config, record)
    (tmp_path / "stale.safetensors").replace(weights)
    os.utime(weights, (ckpt.stat().st_mtime + 60,) * 2)
    assert resolve_init_path(ckpt) == ckpt
    weights.unlink()  # a stage published by an older version: only final.ckpt
    assert resolve_init_path(weights) == ckpt


def test_streamed_init_checks_keys_and_shapes(published, make_cfg):
    _, stage, _ = published
    other = build_model(make_cfg([*STAGE2, "model.backbone.config.hidden_size=32", "init_from=null"]))
    with pytest.raises(ValueError, match="shape mismatch"):
        initialize_from_checkpoint(other, stage / "final.safetensors", allow_missing_mctp=True)
    stage4 = build_model(make_cfg(["model=stage4", "audio.codebook_size=64", "data=synthetic"]))
    with pytest.raises(ValueError, match=r"missing \(\d+\): \['lm\.mctp"):
        initialize_from_checkpoint(stage4, stage / "final.safetensors", allow_missing_mctp=False)


def test_lora_stage_publishes_merged_plain_weights(make_cfg):
    cfg = make_cfg(["model=stage4", "model/lora=backbone", "model.lora.rank=2", "model.mctp.num_modules=1",
                    *STAGE1[1:]])
    model, _, _ = fit(cfg)
    with safe_open(str(Path(cfg.callbacks.publish_stage.dirpath) / "final.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert keys and not any("lora" in k or "base_layer" in k for k in keys)
    plain = build_model(make_cfg(["model=stage4", "model.mctp.num_modules=1", *STAGE1[1:]]))
    assert keys == set(plain.state_dict())
    initialize_from_checkpoint(plain, Path(cfg.callbacks.publish_stage.dirpath) / "final.safetensors", False)
    torch.testing.assert_close(logits(plain), logits(model), rtol=1e-5, atol=1e-5)


def test_backbone_loads_in_the_training_dtype(tiny_backbone, tmp_path):
    tiny_backbone.save_pretrained(tmp_path / "bb")
    bf16 = Backbone(64, pretrained=str(tmp_path / "bb"), dtype="bfloat16")
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    want = tiny_backbone.embed_tokens.weight.to(torch.bfloat16)
    torch.testing.assert_close(bf16.embed_tokens.weight, want, rtol=0, atol=0)
    assert Backbone(64, pretrained=str(tmp_path / "bb")).embed_tokens.weight.dtype == torch.float32
    with pytest.raises(ValueError, match="not a floating-point torch dtype"):
        Backbone(64, pretrained=str(tmp_path / "bb"), dtype="int8")
