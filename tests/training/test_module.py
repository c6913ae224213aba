"""Stage-1 training: golden losses, checkpoint round trip with weights_only, exact resume."""

import copy

import pytest

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


def test_frozen_backbone_stays_in_eval_mode_and_unchanged(make_cfg):
    cfg = make_cfg(["+experiment=boost_stage2", "data=synthetic", "audio.codebook_size=64", "init_from=null",
                    "trainer.max_steps=2", "trainer.limit_val_batches=0", "callbacks.publish_stage.export=false"])
    from vita_audio.cli.common import build_model

    before = {k: v.clone() for k, v in build_model(cfg).lm.backbone.state_dict().items()}
    model, _, _ = fit(cfg)
    model.train()
    assert not model.lm.backbone.training and model.lm.mctp.training
    after = model.lm.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit-identical after the steps
    assert not any(p.requires_grad for p in model.lm.backbone.parameters())
    assert all(p.requires_grad for p in model.lm.mctp.parameters())


def test_stage3_clones_stage2_module_and_stage4_lr_groups(make_cfg, tmp_path):
    from vita_audio.cli.common import build_model

    small = ["data=synthetic", "audio.codebook_size=64", "trainer.fast_dev_run=true",
             "callbacks.publish_stage.export=false", "callbacks.publish_stage.force=true"]
    stage2, _, _ = fit(make_cfg(["+experiment=boost_stage2", *small, "init_from=null"]))
    m0 = stage2.lm.mctp
    stage3 = build_model(make_cfg(["+experiment=boost_stage3", *small]))
    stage3.initialize(make_cfg(["+experiment=boost_stage3"]).init_from)
    assert stage3.lm.mctp.num_modules == 10
    for k in range(10):
        for part in ("layers", "embed_norms", "hidden_norms", "projs"):
            ref = getattr(m0, part)[0].state_dict()
            got = getattr(stage3.lm.mctp, part)[k].state_dict()
            assert all(torch.equal(ref[n], got[n]) for n in ref), (k, part)

    stage4 = build_model(make_cfg(["+experiment=boost_stage4", *small]))
    trainer = __import__("lightning").Trainer(max_steps=10, logger=False, enable_checkpointing=False)
    stage4.trainer = trainer
    opt = stage4.configure_optimizers()["optimizer"]
    mctp_ids = {id(p) for p in stage4.lm.mctp.parameters()}
    base_lr = stage4.optimizer_factory.keywords["lr"]
    for g in opt.param_groups:
        is_mctp = {id(p) in mctp_ids for p in g["params"]}
        assert len(is_mctp) == 1
        assert g["lr"] == pytest.approx(base_lr * (10 if is_mctp.pop() else 1))
    # weight decay by what a parameter is (module types), not by the name rule the implementation uses: the
    # matrices of Linear and Embedding layers decay; biases and every norm's scale do not
    decayed = {id(m.weight) for m in stage4.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Embedding))}
    assert len(decayed) == sum(p.ndim == 2 for p in stage4.parameters())  # no 2-D parameter outside those layers
    norms = [m for m in stage4.modules() if type(m).__name__.endswith("RMSNorm")]
    assert len(norms) == 2 * 2 + 1 + 10 * (2 + 2)  # 2 backbone layers x 2, final norm, 10 MCTP modules x (layer 2 + 2)
    no_decay = {id(m.weight) for m in norms} | {id(p) for n, p in stage4.named_parameters() if n.endswith(".bias")}
    assert decayed.isdisjoint(no_decay) and len(decayed | no_decay) == len(list(stage4.parameters()))
    for g in opt.param_groups:
        for p in g["params"]:
            assert g["weight_decay"] == (0.1 if id(p) in decayed else 0.0), names_of(stage4)[id(p)]
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(stage4.parameters()))


def names_of(module) -> dict[int, str]:
    return {id(p): n for n, p in module.named_parameters()}


def test_step0_loss_is_log_vocab_with_a_zero_head(make_cfg):
    """Independent of any recorded number: with the LM head at zero every logit is 0, so the first training loss
    of stage 1 is log(V) over the whole padded vocabulary, whatever the data."""
    import math

    from tests.training.helpers import fit

    cfg = make_cfg([*RUN, "trainer.max_steps=1", "trainer.limit_val_batches=0"])

    class ZeroHead(__import__("lightning").Callback):
        def on_train_start(self, trainer, pl_module):
            with torch.no_grad():
                pl_module.backbone.lm_head.weight.zero_()

    model, _, losses = fit(cfg, callbacks=[ZeroHead()])
    assert losses[0] == pytest.approx(math.log(model.backbone.vocab_size), rel=1e-6)


def test_unfinished_runs_publish_nothing(make_cfg, tmp_path):
    small = ["data=synthetic", "audio.codebook_size=64", "callbacks.publish_stage.export=false"]
    cfg = make_cfg(["+experiment=boost_stage1", *small, "trainer.fast_dev_run=true"])
    fit(cfg)
    final = tmp_path / "artifacts" / "stages" / "boost_stage1" / "final.ckpt"
    assert not final.exists()
    fit(make_cfg(["+experiment=boost_stage1", *small, "trainer.max_steps=4", "trainer.limit_val_batches=0"]),
        stop_after=2)
    assert not final.exists()  # interrupted before max_steps
    fit(make_cfg(["+experiment=boost_stage1", *small, "trainer.max_steps=2", "trainer.limit_val_batches=0"]))
    assert final.is_file()


def test_progress_is_logged_without_a_progress_bar(make_cfg, caplog):
    cfg = make_cfg(["+experiment=boost_stage1", "data=synthetic", "audio.codebook_size=64", "trainer.max_steps=4",
                    "trainer.accumulate_grad_batches=2", "trainer.limit_val_batches=0",
                    "callbacks.progress_log.every_n_steps=2", "callbacks.publish_stage.export=false"])
    with caplog.at_level("INFO", logger="vita_audio.training.callbacks"):
        fit(cfg)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert [ln.split()[1] for ln in lines] == ["2/4", "4/4"]  # once per optimiser step, not per micro-batch
    assert "loss" in lines[0] and "eta" in lines[0]
