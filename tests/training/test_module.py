"""Stage-1 training: golden losses, checkpoint round trip with weights_only, exact resume."""

import copy

import torch
from omegaconf import OmegaConf

from tests.training.helpers import fit, logits
from vita_audio.cli.common import build_model

RUN = ["data=synthetic", "audio.codebook_size=64", "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
       "callbacks.model_checkpoint.every_n_train_steps=2", "callbacks.publish_stage.export=false",
       "model.optimizer.lr=1e-3"]

# Recorded with torch 2.13.0 (CPU) on the tiny test-size model, synthetic data, seed 42.
GOLDEN = [7.020986557006836, 6.952754497528076, 6.807425022125244, 6.729374885559082]


def test_golden_losses(make_cfg):
    _, _, losses = fit(make_cfg(RUN))
    assert len(losses) == 4
    assert losses[-1] < losses[0]
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(GOLDEN), rtol=1e-4, atol=1e-4)


def test_checkpoint_round_trip_weights_only(make_cfg, tmp_path):
    cfg = make_cfg(RUN)
    model, trainer, _ = fit(cfg)
    path = tmp_path / "rt.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)  # plain data only
    saved_cfg = OmegaConf.create(ckpt["hyper_parameters"]["config"])
    fresh = build_model(saved_cfg)
    fresh.load_state_dict(ckpt["state_dict"])
    torch.testing.assert_close(logits(fresh), logits(model), rtol=0, atol=0)


def test_resume_continues_with_same_losses(make_cfg, tmp_path):
    cfg = make_cfg([*RUN, "trainer.max_steps=6"])
    _, _, full = fit(cfg)

    first = copy.deepcopy(cfg)  # same schedule (max_steps=6), interrupted after step 4
    first.paths.output_dir = str(tmp_path / "first")
    _, trainer, head = fit(first, stop_after=4)
    ckpt = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    _, _, tail = fit(cfg, ckpt_path=str(ckpt))
    assert len(head) == 4 and len(tail) == 2
    torch.testing.assert_close(torch.tensor(head + tail), torch.tensor(full), rtol=1e-5, atol=1e-5)
