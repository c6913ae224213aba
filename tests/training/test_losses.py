"""Losses and metrics of the stage module: empty MCTP levels, token-weighted validation of every head in every
stage, the stage-4 MCTP-gradient switch, stage 3's need for a trained module 0, learning rates of every group."""

from __future__ import annotations

import math
import sys
from functools import partial

import lightning as L
import pytest
import torch

from tests.conftest import TINY_CONFIG
from tests.distributed import clean_env, run_all
from vita_audio.model.backbone import Backbone
from vita_audio.model.loss import IGNORE_INDEX, chunked_cross_entropy, shifted_targets
from vita_audio.model.mctp import MCTPStack
from vita_audio.model.mctp_loss import mctp_losses, mctp_targets
from vita_audio.model.weighting import LossWeighting
from vita_audio.training.module import SpeechLMModule

FROZEN = {"frozen": [r"^backbone\."]}


def make_module(num_mctp: int = 2, freeze=None, loss: LossWeighting | None = None, **kw) -> SpeechLMModule:
    torch.manual_seed(0)
    bb = Backbone(64, config=dict(TINY_CONFIG), tokenizer="tiny")
    mctp = partial(MCTPStack.for_backbone, num_modules=num_mctp) if num_mctp else None
    opt = partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.0)
    return SpeechLMModule(bb, opt, mctp=mctp, loss=loss, freeze=freeze, ce_chunk_rows=16, **kw)


def text_batch(module: SpeechLMModule, B: int = 2, T: int = 12, seed: int = 0, supervised: slice = slice(None)):
    """Packed-free rows of text tokens only (no audio target anywhere); labels on the `supervised` positions."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(300, module.backbone.audio_vocab.begin_of_audio, (B, T), generator=g)
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, supervised] = ids[:, supervised]
    return {"input_ids": ids, "labels": labels, "position_ids": torch.arange(T).expand(B, T),
            "sample_ids": torch.zeros(B, T, dtype=torch.long)}


# -- fault 2: MCTP levels without a supervised target ---------------------------------------------------------
def test_all_levels_empty_still_backpropagates():
    """Stage 2/3 with loss=audio_only on a text-only batch: every level is empty; backward works and gives every
    trainable parameter a (zero) gradient."""
    m = make_module(2, FROZEN, LossWeighting(mctp_tokens="audio"))
    batch = text_batch(m)
    assert not (m.backbone.audio_vocab.is_audio(batch["labels"])).any()  # nothing for the audio-only MCTP loss
    out = m.compute_losses(batch)
    assert float(out["loss"].detach()) == 0.0
    out["loss"].backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert grads and all(g is not None and not g.any() for g in grads)


def test_empty_level_is_left_out_of_the_mean():
    """Only labels[2] is supervised: module 0 (target labels[t+2]) has one target, module 1 (labels[t+3]) none.
    The MCTP term is module 0's CE alone, not the mean with a zero."""
    m = make_module(2, FROZEN)
    batch = text_batch(m, supervised=slice(2, 3))
    counts = [int((mctp_targets(batch["labels"], k, batch["sample_ids"]) != IGNORE_INDEX).sum()) for k in (0, 1)]
    assert counts == [2, 0]
    out = m.compute_losses(batch)
    torch.testing.assert_close(out["loss"], out["loss_mctp_0"])
    w = LossWeighting(decay=0.5)
    a, b = torch.tensor(2.0), torch.tensor(4.0)
    assert float(w.combine(None, [a, b], [torch.tensor(3), torch.tensor(5)])) == pytest.approx((2 + 0.5 * 4) / 1.5)
    assert float(w.combine(None, [a, b], [torch.tensor(0), torch.tensor(5)])) == pytest.approx(4.0)


@pytest.mark.slow
def test_ddp_with_an_empty_level_and_no_unused_parameter_search(tmp_path):
    """Two CPU processes (gloo), DistributedDataParallel without find_unused_parameters, MCTP module 1 without a
    target in every step: the reducer gets a gradient for every parameter, steps stay in sync."""
    cmd = [sys.executable, "-m", "tests.training.ddp_empty_level", str(tmp_path)]
    run_all([([*cmd, str(rank)], clean_env()) for rank in (0, 1)], timeout=300)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for r in results:
        assert r["steps"] == 3 and r["module1_grad_zero"] and r["module0_grad_nonzero"]
    torch.testing.assert_close(results[0]["proj0"], results[1]["proj0"], rtol=0, atol=0)  # in sync


# -- fault 3: metrics that mean one thing ---------------------------------------------------------------------
def _validate(m: SpeechLMModule, batches):
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False)
    loader = torch.utils.data.DataLoader(batches, batch_size=None)  # the batches as they are
    return trainer.validate(m, dataloaders=loader, verbose=False)[0]


def _token_weighted(m: SpeechLMModule, batches, head: str) -> float:
    """Sum of CE over all supervised targets of all batches / their number, from the model parts directly."""
    sums = counts = 0.0
    weight = m.backbone.lm_head.weight
    with torch.no_grad():
        for b in batches:
            h0, levels = m.lm.hidden_states(b["input_ids"], b["position_ids"], b["sample_ids"])
            if head == "main":
                targets = shifted_targets(b["labels"], 1, b["sample_ids"]).reshape(-1)
                s, n, _ = chunked_cross_entropy(h0[:, :-1].reshape(-1, h0.shape[-1]), weight, targets)
            else:
                s, n, _ = mctp_losses(levels, b["labels"], b["sample_ids"], weight)[int(head.split("_")[1])]
            sums, counts = sums + float(s), counts + float(n)
    return sums / counts


@pytest.mark.parametrize("frozen", [True, False], ids=["stage2_3", "stage4"])
def test_validation_logs_every_head_token_weighted(frozen):
    m = make_module(2, FROZEN if frozen else None)
    m.eval()
    # two batches with very different numbers of supervised tokens: a row mean would weigh them equally
    batches = [text_batch(m, seed=1), text_batch(m, seed=2, supervised=slice(5, 8))]
    res = _validate(m, batches)
    assert {"val/loss", "val/loss_main", "val/loss_mctp_0", "val/loss_mctp_1", "val/acc_main"} <= set(res)
    for head in ("main", "mctp_0", "mctp_1"):
        assert res[f"val/loss_{head}"] == pytest.approx(_token_weighted(m, batches, head), rel=1e-5), head
    # val/loss = L_main + mean_k CE_k, in the frozen stages too
    expect = res["val/loss_main"] + (res["val/loss_mctp_0"] + res["val/loss_mctp_1"]) / 2
    assert res["val/loss"] == pytest.approx(expect, rel=1e-5)
    row_mean = sum(float(m.compute_losses(b, with_main=True)["loss_mctp_0"]) for b in batches) / 2
    assert res["val/loss_mctp_0"] != pytest.approx(row_mean, rel=1e-3)  # the batches really differ


def test_training_objective_skips_the_frozen_main_head():
    m = make_module(2, FROZEN)
    out = m.compute_losses(text_batch(m))
    assert "loss_main" not in out  # no LM-head logits over the sequence in stages 2/3
    torch.testing.assert_close(out["loss"], (out["loss_mctp_0"] + out["loss_mctp_1"]) / 2)


def test_learning_rate_of_every_group_is_logged(make_cfg):
    from tests.training.helpers import fit

    cfg = make_cfg(["+experiment=boost_stage4", "data=synthetic", "audio.codebook_size=64", "init_from=null",
                    "trainer.max_steps=2", "trainer.limit_val_batches=0", "callbacks.publish_stage.export=false"])
    _, trainer, _ = fit(cfg)
    lrs = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("lr/")}
    groups = trainer.optimizers[0].param_groups
    assert len(lrs) == len(groups) >= 3, lrs
    assert {g["name"] for g in groups} == {k.removeprefix("lr/") for k in lrs}
    base = {v for k, v in lrs.items() if k.startswith("lr/base")}
    mctp = {v for k, v in lrs.items() if k.startswith("lr/x10")}
    assert len(base) == len(mctp) == 1 and mctp.pop() == pytest.approx(10 * base.pop())


# -- fault 4: stage 3 clones a trained module 0 only ---------------------------------------------------------
def test_clone_first_refuses_a_checkpoint_without_module_0(tmp_path):
    stage1 = make_module(0)
    path = tmp_path / "stage1.ckpt"
    torch.save({"state_dict": stage1.state_dict()}, path)
    stage3 = make_module(3, FROZEN, mctp_init="clone_first")
    with pytest.raises(ValueError, match=r"holds no trained MCTP module 0.*Train stage 2 first \(python train.py "
                                         r"\+experiment=boost_stage2\)"):
        stage3.initialize(str(path), "boost_stage2")
    with pytest.raises(ValueError, match="no init_from was given"):
        stage3.initialize(None, "boost_stage2")
    stage2 = make_module(1, FROZEN)
    torch.save({"state_dict": stage2.state_dict()}, tmp_path / "stage2.ckpt")
    stage3.initialize(str(tmp_path / "stage2.ckpt"), "boost_stage2")  # a trained module 0: cloned
    for k in range(3):
        torch.testing.assert_close(stage3.lm.mctp.projs[k].weight, stage2.lm.mctp.projs[0].weight, rtol=0, atol=0)


# -- fault 6: the stage-4 switch for MCTP gradients into the shared parts -----------------------------------
@pytest.mark.parametrize("into_backbone", [True, False])
def test_mctp_gradient_switch(into_backbone):
    m = make_module(2, None, LossWeighting(main_weight=0.0), mctp_grad_into_backbone=into_backbone)
    out = m.compute_losses(text_batch(m))
    out["loss"].backward()
    bb = m.backbone
    shared = {"layers": [p for p in bb.layers.parameters()], "embed": [bb.embed_tokens.weight],
              "head": [bb.lm_head.weight], "final_norm": list(bb.final_norm.parameters())}
    for part, params in shared.items():
        reached = any(p.grad is not None and p.grad.any() for p in params)
        assert reached == into_backbone, part
    assert all(p.grad is not None and p.grad.any() for p in m.lm.mctp.projs.parameters())
    # the forward values do not depend on the switch
    other = make_module(2, None, LossWeighting(main_weight=0.0), mctp_grad_into_backbone=not into_backbone)
    torch.testing.assert_close(other.compute_losses(text_batch(other))["loss"], out["loss"])


# -- an independent check of the loss: a zero head predicts uniformly over the whole (padded) vocabulary -------
def test_zero_head_gives_log_vocab_for_every_head():
    m = make_module(2)
    with torch.no_grad():
        m.backbone.lm_head.weight.zero_()
    out = m.compute_losses(text_batch(m, supervised=slice(3, 10)))
    V = m.backbone.vocab_size
    for head in ("main", "mctp_0", "mctp_1"):
        assert float(out[f"loss_{head}"]) == pytest.approx(math.log(V), rel=1e-6), head
    assert float(out["loss"]) == pytest.approx(2 * math.log(V), rel=1e-6)


def test_main_loss_equals_the_hf_model_loss():
    """Unpacked rows: the chunked main loss is the HF causal-LM loss (its own shift, mean over supervised)."""
    m = make_module(0)
    batch = text_batch(m, supervised=slice(4, 11))
    batch.pop("sample_ids")
    with torch.no_grad():
        ours = m.compute_losses(batch)["loss_main"]
        hf = m.backbone.model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
    torch.testing.assert_close(ours, hf, rtol=1e-5, atol=1e-6)


# -- fault 6: what the loss means under gradient accumulation (documented in the README) ---------------------
def test_gradient_accumulation_averages_micro_batch_means():
    """accumulate_grad_batches=2 steps on the mean of the two micro-batches' per-token means (each micro-batch
    weighs the same, whatever its number of supervised tokens), as the README states."""
    import copy

    m = make_module(0, None, loss=None)
    m.optimizer_factory = partial(torch.optim.SGD, lr=1.0, weight_decay=0.0)
    batches = [text_batch(m, seed=3), text_batch(m, seed=4, supervised=slice(6, 8))]  # 22 vs 4 targets
    ref = copy.deepcopy(m)
    grads = []
    for b in batches:
        ref.zero_grad(set_to_none=True)
        ref.compute_losses(b)["loss"].backward()
        grads.append({n: p.grad.clone() for n, p in ref.named_parameters()})
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    trainer = L.Trainer(accelerator="cpu", max_steps=1, accumulate_grad_batches=2, gradient_clip_val=None,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)
    trainer.fit(m, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    name = "lm.backbone.model.model.layers.0.mlp.up_proj.weight"
    step = before[name] - dict(m.named_parameters())[name].detach()  # SGD, lr 1: the gradient used
    torch.testing.assert_close(step, (grads[0][name] + grads[1][name]) / 2, rtol=1e-4, atol=1e-7)
