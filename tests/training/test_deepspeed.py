"""DeepSpeed ZeRO-2 / ZeRO-3 through Lightning, on CPU.

Lightning's DeepSpeedStrategy refuses non-CUDA accelerators; this test-only subclass skips that check (and uses
gloo on one CPU device), so the strategy config, checkpoint save and the next stage's `init_from` of a ZeRO
checkpoint directory are exercised on machines without a GPU. The first run JIT-compiles a DeepSpeed op (~20 s).
"""

import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy

from tests.conftest import TEST_SIZE, compose_cfg
from tests.training.helpers import fit
from vita_audio.training.init import load_state_dict_file

deepspeed = pytest.importorskip("deepspeed")


@pytest.fixture(autouse=True, scope="module")
def _no_process_group_left_behind():
    """DeepSpeed initialises a (gloo) process group and keeps it for this module's tests; later test modules in
    this process must not see it."""
    yield
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class CPUDeepSpeedStrategy(DeepSpeedStrategy):
    def __init__(self, **kwargs) -> None:
        super().__init__(parallel_devices=[torch.device("cpu", 0)], process_group_backend="gloo", **kwargs)

    def setup_environment(self) -> None:
        DDPStrategy.setup_environment(self)


@pytest.mark.slow
@pytest.mark.deepspeed
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_trains_and_next_stage_loads(tmp_path, stage):
    common = [  # the shipped trainer=deepspeed preset, moved to the CPU
        "trainer=deepspeed", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.precision=32-true",
        "trainer.strategy._target_=tests.training.test_deepspeed.CPUDeepSpeedStrategy", f"trainer.strategy.stage={stage}",
        "data=synthetic", "audio.codebook_size=64", *TEST_SIZE, "trainer.max_steps=2",
        "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
    ]
    cfg = compose_cfg(tmp_path, ["+experiment=boost_stage1", *common])
    _, trainer, losses = fit(cfg)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    final = tmp_path / "artifacts" / "stages" / "boost_stage1" / "final.ckpt"
    assert final.is_dir()  # a ZeRO checkpoint is a directory of shards
    assert not list(final.parent.glob("*.fp32.pt"))

    # the HF export holds the whole trained weights (ZeRO-3 partitions them: they are gathered for it)
    from vita_audio.model.checkpoint import load_pretrained

    exported = load_pretrained(final.parent / "hf").state_dict()
    consolidated = load_state_dict_file(final)
    for k, v in exported.items():
        torch.testing.assert_close(v, consolidated[f"lm.{k}"].float(), rtol=0, atol=0, msg=k)

    # the next stage consolidates it (init_from) without DeepSpeed in the loop
    nxt = compose_cfg(tmp_path, ["+experiment=boost_stage2", "trainer=cpu", "data=synthetic", "audio.codebook_size=64",
                                 *TEST_SIZE, "trainer.fast_dev_run=true", "callbacks.publish_stage.export=false"])
    model, _, losses2 = fit(nxt)
    assert len(losses2) == 1
    # the frozen backbone of stage 2 is exactly stage 1's consolidated ZeRO weights
    stage1 = load_state_dict_file(final)
    key = "lm.backbone.model.model.layers.0.self_attn.q_proj.weight"
    torch.testing.assert_close(model.state_dict()[key], stage1[key].float(), rtol=0, atol=0)
