"""DeepSpeed ZeRO-2 / ZeRO-3 through Lightning, on CPU.

Lightning's DeepSpeedStrategy refuses non-CUDA accelerators; this test-only subclass skips that check (and uses
gloo on one CPU device), so the strategy config, checkpoint save and the next stage's `init_from` of a ZeRO
checkpoint directory are exercised on machines without a GPU. The first run JIT-compiles a DeepSpeed op (~20 s).
"""

import lightning as L
import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy

from tests.conftest import TEST_SIZE, compose_cfg
from tests.training.helpers import fit, release_process_group
from vita_audio.training.init import load_state_dict_file

deepspeed = pytest.importorskip("deepspeed")


@pytest.fixture(autouse=True, scope="module")
def _no_process_group_left_behind():
    """DeepSpeed initialises a (gloo) process group and keeps it for this module's tests; later test modules in
    this process must not see it."""
    yield
    release_process_group()


class CPUDeepSpeedStrategy(DeepSpeedStrategy):
    """`param_persistence_threshold`: ZeRO-3 keeps parameters with fewer elements than this whole on every rank
    (DeepSpeed's default 1e5 would keep every tiny test parameter whole: nothing would be partitioned)."""

    def __init__(self, param_persistence_threshold: int | None = None, **kwargs) -> None:
        super().__init__(parallel_devices=[torch.device("cpu", 0)], process_group_backend="gloo", **kwargs)
        if param_persistence_threshold is not None:
            self.config["zero_optimization"]["stage3_param_persistence_threshold"] = param_persistence_threshold

    def setup_environment(self) -> None:
        DDPStrategy.setup_environment(self)


class PartitionProbe(L.Callback):
    """Records, before each step, whether ZeRO-3 holds the LM head (used directly by the chunked losses through
    `lm_head.weight`, never through the module's forward) and a layer weight partitioned (empty local data)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, bool]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        bb = pl_module.lm.backbone
        params = {"lm_head": bb.lm_head.weight, "q_proj": bb.layers[0].self_attn.q_proj.weight,
                  "embed": bb.embed_tokens.weight}
        self.seen.append({k: hasattr(p, "ds_status") and p.data.numel() == 0 for k, p in params.items()})


@pytest.mark.slow
@pytest.mark.deepspeed
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_trains_and_next_stage_loads(tmp_path, stage):
    data = ["data=synthetic", "audio.codebook_size=64", *TEST_SIZE, "trainer.max_steps=2",
            "trainer.val_check_interval=2", "trainer.limit_val_batches=1"]
    common = [  # the shipped trainer=deepspeed preset, moved to the CPU
        "trainer=deepspeed", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.precision=32-true",
        "trainer.strategy._target_=tests.training.test_deepspeed.CPUDeepSpeedStrategy", f"trainer.strategy.stage={stage}",
        # every tiny parameter is below DeepSpeed's default persistence threshold (1e5): partition them all
        "+trainer.strategy.param_persistence_threshold=0", *data,
    ]
    cfg = compose_cfg(tmp_path, ["+experiment=boost_stage1", *common])
    probe = PartitionProbe()
    _, trainer, losses = fit(cfg, callbacks=[probe])
    if stage == 3:  # really partitioned, the directly used LM head included
        assert probe.seen and all(all(s.values()) for s in probe.seen), probe.seen
    # the same run without DeepSpeed gives the same losses (step 0 identical; step 1 after one optimiser step)
    plain = compose_cfg(tmp_path / "plain", ["+experiment=boost_stage1", "trainer=cpu", *data,
                                             "callbacks.publish_stage.export=false"])
    plain_model, plain_trainer, plain_losses = fit(plain)
    assert len(losses) == 2
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(plain_losses), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(trainer.callback_metrics["val/loss"], plain_trainer.callback_metrics["val/loss"],
                               rtol=1e-4, atol=1e-5)
    final = tmp_path / "artifacts" / "stages" / "boost_stage1" / "final.ckpt"
    assert final.is_dir()  # a ZeRO checkpoint is a directory of shards
    assert not list(final.parent.glob("*.fp32.pt"))

    # the HF export holds the whole trained weights (ZeRO-3 partitions them: they are gathered for it)
    from vita_audio.checkpoint import load_pretrained

    exported = load_pretrained(final.parent / "hf").state_dict()
    consolidated = load_state_dict_file(final)
    trained = plain_model.lm.state_dict()
    for k, v in exported.items():
        torch.testing.assert_close(v, consolidated[f"lm.{k}"].float(), rtol=0, atol=0, msg=k)
        torch.testing.assert_close(v, trained[k], rtol=1e-3, atol=1e-5, msg=k)  # what the plain run trained

    # the next stage consolidates it (init_from) without DeepSpeed in the loop
    nxt = compose_cfg(tmp_path, ["+experiment=boost_stage2", "trainer=cpu", "data=synthetic", "audio.codebook_size=64",
                                 *TEST_SIZE, "trainer.fast_dev_run=true", "callbacks.publish_stage.export=false"])
    model, _, losses2 = fit(nxt)
    assert len(losses2) == 1
    # the frozen backbone of stage 2 is exactly stage 1's consolidated ZeRO weights
    stage1 = load_state_dict_file(final)
    key = "lm.backbone.model.model.layers.0.self_attn.q_proj.weight"
    torch.testing.assert_close(model.state_dict()[key], stage1[key].float(), rtol=0, atol=0)
