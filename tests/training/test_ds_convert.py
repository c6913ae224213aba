"""DeepSpeed checkpoints everywhere: ZeRO directory -> `vita_audio.cli.convert` -> weights file / exported directory;
eval.py (task=loss), `load_model` and `init_from` read either; a DeepSpeed run resumes from its directory.

The DeepSpeed runs use the CPU subclass of Lightning's strategy from test_deepspeed.py (gloo, one CPU device).
"""

import shutil

import lightning as L
import pytest
import torch

from tests.conftest import TEST_SIZE, compose_cfg
from tests.training.helpers import fit, release_process_group

EVAL_DATA = ["data=synthetic", "audio.codebook_size=64", "data.batch_size=2", "trainer.limit_val_batches=1"]
DATA = [*EVAL_DATA, *TEST_SIZE]


@pytest.fixture(autouse=True, scope="module")
def _no_process_group_left_behind():
    yield
    release_process_group()


def ds_overrides(stage: int) -> list[str]:
    return ["trainer=deepspeed", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.precision=32-true",
            "trainer.strategy._target_=tests.training.test_deepspeed.CPUDeepSpeedStrategy",
            f"trainer.strategy.stage={stage}", "+trainer.strategy.param_persistence_threshold=0",
            "callbacks.publish_stage.export=false", *DATA]


def lm_logits(lm, seed: int = 0) -> torch.Tensor:
    x = torch.randint(0, lm.backbone.vocab_size, (2, 12), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        main, levels = lm.eval()(x)
    return torch.cat([main.flatten(), *[lv.flatten() for lv in levels]])


def eval_loss(tmp_path, ckpt, name: str) -> float:
    from vita_audio.cli.eval import evaluate

    ev = compose_cfg(tmp_path / name, [f"ckpt_path={ckpt}", *EVAL_DATA], config_name="eval")
    return evaluate(ev)["val/loss"]


def check_conversion(tmp_path, ds_dir, live_logits: torch.Tensor | None = None) -> None:
    """ds_dir -> convert (one command) -> eval loss and decoding logits equal over every checkpoint kind."""
    from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

    from vita_audio.cli.convert import main as convert_main
    from vita_audio.inference import load_model

    weights, hf = tmp_path / "conv" / "w.safetensors", tmp_path / "conv" / "hf"
    assert convert_main([str(ds_dir), "--weights", str(weights), "--export", str(hf)]) == 0
    assert weights.is_file() and (hf / "config.json").is_file()
    # the reference: Lightning's own consolidation to a plain .ckpt, read by the existing .ckpt paths
    ref_ckpt = tmp_path / "conv" / "lightning.ckpt"
    convert_zero_checkpoint_to_fp32_state_dict(str(ds_dir), str(ref_ckpt))

    ref = lm_logits(load_model(ref_ckpt))
    if live_logits is not None:
        torch.testing.assert_close(ref, live_logits, rtol=0, atol=0)
    for kind in (ds_dir, weights, hf):
        torch.testing.assert_close(lm_logits(load_model(kind)), ref, rtol=0, atol=0, msg=str(kind))
    losses = {name: eval_loss(tmp_path, p, name) for name, p in
              [("ckpt", ref_ckpt), ("ds", ds_dir), ("weights", weights)]}
    assert losses["ds"] == losses["ckpt"] and losses["weights"] == losses["ckpt"], losses


class StartProbe(L.Callback):
    """Records the step counter and how much optimizer state there is when training (re)starts."""

    def __init__(self) -> None:
        self.start_step, self.optimizer_state = None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.start_step is None:
            self.start_step = trainer.global_step
            opt = trainer.optimizers[0]
            inner = getattr(opt, "optimizer", opt)  # DeepSpeed's ZeRO optimizer wraps the torch one
            self.optimizer_state = sum(len(s) for s in inner.state.values())


@pytest.mark.slow
@pytest.mark.deepspeed
def test_zero2_resume_and_convert(tmp_path):
    pytest.importorskip("deepspeed")
    run = ["+experiment=boost_stage1", *ds_overrides(2), "trainer.max_steps=4", "trainer.val_check_interval=4",
           "callbacks.model_checkpoint.every_n_train_steps=2", "callbacks.model_checkpoint.save_top_k=-1"]
    model, trainer, losses = fit(compose_cfg(tmp_path / "a", run))
    assert len(losses) == 4
    ckpt_dir = tmp_path / "a" / "out" / "checkpoints"
    step2 = ckpt_dir / "step000002.ckpt"
    assert step2.is_dir() and (step2 / "latest").is_file(), sorted(p.name for p in ckpt_dir.iterdir())

    # resume from the step-2 ZeRO directory: step counter and optimizer state restored, same losses for 3 and 4
    probe = StartProbe()
    _, resumed, losses_b = fit(compose_cfg(tmp_path / "b", run), ckpt_path=str(step2), callbacks=[probe])
    assert probe.start_step == 2 and probe.optimizer_state > 0
    assert resumed.global_step == 4
    torch.testing.assert_close(torch.tensor(losses_b), torch.tensor(losses[2:]), rtol=1e-6, atol=1e-6)

    # conversion of the final ZeRO-2 directory; ZeRO-2 keeps the parameters whole: the live model is the reference
    check_conversion(tmp_path, ckpt_dir / "last.ckpt", live_logits=lm_logits(model.lm))

    # init_from reads the ZeRO directory and the converted file alike (the published final.ckpt is a directory)
    from vita_audio.training.init import load_state_dict_file

    from_dir = load_state_dict_file(ckpt_dir / "last.ckpt")
    from_file = load_state_dict_file(tmp_path / "conv" / "w.safetensors")
    assert from_dir.keys() == from_file.keys()
    for k in from_dir:
        torch.testing.assert_close(from_file[k], from_dir[k], rtol=0, atol=0, msg=k)

    # a ZeRO directory whose client state holds no training config is refused, clearly
    bare = tmp_path / "bare"
    shutil.copytree(ckpt_dir / "last.ckpt", bare)
    states = bare / "checkpoint" / "mp_rank_00_model_states.pt"
    client = torch.load(states, map_location="cpu", weights_only=False)
    del client["hyper_parameters"]
    torch.save(client, states)
    from vita_audio.checkpoint.convert import convert

    with pytest.raises(ValueError, match="holds no training config"):
        convert(bare, weights=tmp_path / "x.safetensors")
    # but init_from needs no config: the bare state dict still starts a stage
    assert load_state_dict_file(bare).keys() == from_dir.keys()


@pytest.mark.slow
@pytest.mark.deepspeed
def test_zero3_convert(tmp_path):
    pytest.importorskip("deepspeed")
    run = ["+experiment=boost_stage1", *ds_overrides(3), "trainer.max_steps=2", "trainer.val_check_interval=2"]
    fit(compose_cfg(tmp_path / "a", run))
    final = tmp_path / "a" / "artifacts" / "stages" / "boost_stage1"
    ds_dir = tmp_path / "a" / "out" / "checkpoints" / "last.ckpt"
    assert (final / "final.ckpt" / "latest").is_file() and (ds_dir / "latest").is_file()
    check_conversion(tmp_path, ds_dir)
    # the converted weights equal what PublishStage gathered from the partitioned parameters at the end of the run
    from vita_audio.training.init import load_state_dict_file

    published = load_state_dict_file(final / "final.safetensors")
    converted = load_state_dict_file(tmp_path / "conv" / "w.safetensors")
    assert published.keys() == converted.keys()
    for k in published:
        torch.testing.assert_close(converted[k], published[k], rtol=0, atol=0, msg=k)


def test_convert_refuses_what_it_cannot_read(tmp_path):
    from vita_audio.checkpoint import open_checkpoint
    from vita_audio.checkpoint.convert import convert
    from vita_audio.checkpoint.formats import DeepSpeedDirectory
    from vita_audio.cli.convert import main
    from vita_audio.training.init import load_state_dict_file

    fake = tmp_path / "ds"
    (fake / "checkpoint").mkdir(parents=True)
    (fake / "latest").write_text("checkpoint")
    torch.save({"module": {}}, fake / "checkpoint" / "mp_rank_00_model_states.pt")
    assert isinstance(open_checkpoint(fake), DeepSpeedDirectory)
    with pytest.raises(ValueError, match="holds no training config"):
        open_checkpoint(fake).require_config()
    with pytest.raises(ValueError, match="nothing to write"):
        convert(fake)
    with pytest.raises(ValueError, match="must end in .safetensors"):
        convert(fake, weights=tmp_path / "w.pt")
    with pytest.raises(SystemExit):
        main([str(fake)])
    # a DeepSpeed directory without its client state (Lightning's model states file): named, nothing else read
    (fake / "checkpoint" / "mp_rank_00_model_states.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"has no mp_rank_00_model_states\.pt"):
        open_checkpoint(fake)
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(FileNotFoundError, match="neither an exported checkpoint"):
        load_state_dict_file(other)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_checkpoint(tmp_path / "missing.ckpt")
