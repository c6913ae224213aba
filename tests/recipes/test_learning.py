"""Losses fall on the corpus over short runs: stage 1 (whole LLM) and then stage 2 (one MCTP module)."""

import pytest

from tests.conftest import TEST_SIZE, compose_cfg, corpus_overrides
from tests.training.helpers import fit


def mean(xs):
    return sum(xs) / len(xs)


@pytest.mark.slow
def test_losses_fall_on_the_corpus(tmp_path, tiny_corpus_cache):
    common = ["trainer=cpu", *TEST_SIZE, "data.max_len=512", "data.batch_size=2",
              *corpus_overrides(tiny_corpus_cache), "trainer.val_check_interval=100",
              "trainer.limit_val_batches=0", "callbacks.publish_stage.export=false"]
    cfg = compose_cfg(tmp_path, ["+experiment=boost_stage1", *common, "trainer.max_steps=24"])
    _, _, losses = fit(cfg)
    assert mean(losses[-4:]) < 0.9 * mean(losses[:4]), losses

    cfg2 = compose_cfg(tmp_path, ["+experiment=boost_stage2", *common, "trainer.max_steps=16"])
    model, trainer, losses2 = fit(cfg2)
    assert not model.backbone_trainable
    assert mean(losses2[-4:]) < 0.9 * losses2[0], losses2
    assert "train/loss_mctp_0" in trainer.callback_metrics and "train/loss_main" not in trainer.callback_metrics
