"""Every config group composes, and every option that can be built on this machine instantiates."""

from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from vita_audio.cli.common import CONFIG_DIR, build_datamodule, build_model, build_trainer

CONF = Path(CONFIG_DIR)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_every_group_has_options():
    for group in ["model", "model/backbone", "model/mctp", "model/freeze", "model/loss", "model/optimizer",
                  "model/scheduler", "data", "interleave", "trainer", "logger", "callbacks", "paths", "hydra",
                  "debug", "experiment", "hparams_search", "audio"]:
        assert options(group), group


@pytest.mark.parametrize("stage", options("model"))
def test_model_stages_instantiate(make_cfg, stage):
    cfg = make_cfg([f"model={stage}", "audio.codebook_size=64"])
    model = build_model(cfg)
    has_mctp = cfg.model.get("mctp") is not None
    assert (model.lm.mctp is not None) == has_mctp
    frozen = bool(cfg.model.freeze.frozen)
    assert model.backbone_trainable == (not frozen)
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


# what each loss preset must configure: (main_weight, mctp_weight, a_k for 3 modules, mctp_tokens)
LOSS_PRESETS = {
    "reference": (1.0, 1.0, [1.0, 1.0, 1.0], "all"),
    "decay": (1.0, 1.0, [1.0, 0.8, 0.64], "all"),
    "audio_only": (1.0, 1.0, [1.0, 1.0, 1.0], "audio"),
}


def test_every_loss_preset_is_checked():
    assert set(options("model/loss")) == set(LOSS_PRESETS)


@pytest.mark.parametrize("loss", sorted(LOSS_PRESETS))
def test_loss_presets(make_cfg, loss):
    cfg = make_cfg([f"model/loss={loss}"])
    w = hydra.utils.instantiate(cfg.model.loss)
    main_weight, mctp_weight, a, tokens = LOSS_PRESETS[loss]
    assert (w.main_weight, w.mctp_weight, w.mctp_tokens) == (main_weight, mctp_weight, tokens)
    assert w.weights(3) == pytest.approx(a)


@pytest.mark.parametrize("interleave", options("interleave"))
def test_interleave_presets(make_cfg, interleave):
    cfg = make_cfg([f"interleave={interleave}"])
    ratio = list(cfg.interleave.ratio)
    assert len(ratio) % 2 == 0 and ratio[0] == 1 and all(r > 0 for r in ratio)


def test_real_backbone_presets_read_local_dirs(make_cfg, tmp_path, tiny_backbone):
    """qwen2_5_* presets load `${paths.checkpoints_dir}/<name>`: a tiny checkpoint in that format stands in."""
    for preset in ["qwen2_5_0_5b", "qwen2_5_7b"]:
        cfg = make_cfg([f"model/backbone={preset}", f"paths.checkpoints_dir={tmp_path}/ckpts",
                        "audio.codebook_size=64"], small=False)
        with pytest.raises(Exception, match="nothing is fetched"):  # Hydra wraps it, keeping the message
            hydra.utils.instantiate(cfg.model.backbone)
        tiny_backbone.save_pretrained(cfg.model.backbone.pretrained)
        bb = hydra.utils.instantiate(cfg.model.backbone)
        assert bb.vocab_size == tiny_backbone.vocab_size


# what each hardware preset configures (checked on every machine), beyond the shared trainer/default.yaml
TRAINER_PRESETS = {
    "cpu": {"accelerator": "cpu", "devices": 1, "precision": "32-true"},
    "gpu": {"accelerator": "gpu", "devices": 1, "precision": "bf16-mixed"},
    "ddp": {"accelerator": "gpu", "devices": -1, "num_nodes": 1, "precision": "bf16-mixed", "strategy": "ddp",
            "use_distributed_sampler": False},
    "deepspeed": {"accelerator": "gpu", "devices": -1, "num_nodes": 1, "precision": "bf16-mixed",
                  "use_distributed_sampler": False},
}


def test_every_trainer_preset_is_checked():
    assert set(options("trainer")) - {"default"} == set(TRAINER_PRESETS)


@pytest.mark.parametrize("trainer", sorted(TRAINER_PRESETS))
def test_trainer_presets_configure(make_cfg, trainer):
    cfg = make_cfg([f"trainer={trainer}"])
    t = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert t["_target_"] == "lightning.pytorch.Trainer" and t["gradient_clip_val"] == 1.0
    assert {k: t.get(k) for k in TRAINER_PRESETS[trainer]} == TRAINER_PRESETS[trainer]
    if trainer == "deepspeed":  # ZeRO-2, the reference set-up, with our loaders' batch size for its logging
        s = t["strategy"]
        assert s["_target_"] == "lightning.pytorch.strategies.DeepSpeedStrategy" and s["stage"] == 2
        assert s["logging_batch_size_per_gpu"] == cfg.data.batch_size and not s["offload_optimizer"]


def test_cpu_trainer_builds(make_cfg):
    trainer = build_trainer(make_cfg(["trainer=cpu"]))
    assert type(trainer.accelerator).__name__ == "CPUAccelerator" and trainer.gradient_clip_val == 1.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the gpu / ddp / deepspeed presets need a CUDA GPU")
@pytest.mark.parametrize("trainer", ["gpu", "ddp", "deepspeed"])
def test_gpu_trainer_presets_build(make_cfg, trainer):
    if trainer == "deepspeed":
        pytest.importorskip("deepspeed")
    trainer_obj = build_trainer(make_cfg([f"trainer={trainer}"]))
    assert type(trainer_obj.accelerator).__name__ == "CUDAAccelerator"
    assert trainer_obj.precision == "bf16-mixed"


@pytest.mark.parametrize("logger", options("logger"))
def test_loggers_instantiate_offline(make_cfg, logger, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    if logger == "wandb":
        pytest.importorskip("wandb")
    if logger == "tensorboard":
        pytest.importorskip("tensorboard")
    cfg = make_cfg([f"logger={logger}"])
    trainer = build_trainer(cfg)
    assert len(trainer.loggers) == 1
    assert str(cfg.paths.output_dir) in str(trainer.loggers[0].save_dir)


@pytest.mark.parametrize("debug", options("debug"))
def test_debug_presets_publish_inside_the_run(make_cfg, debug):
    cfg = make_cfg([f"debug={debug}"])
    assert cfg.callbacks.publish_stage.dirpath.startswith(cfg.paths.output_dir)


def test_hparams_search_composes(make_cfg):
    cfg = make_cfg(["hparams_search=lr_sweep"])
    assert cfg.optimized_metric == "val/loss"


def test_synthetic_data_contract(make_cfg):
    cfg = make_cfg(["data=synthetic", "audio.codebook_size=64"])
    model = build_model(cfg)
    dm = build_datamodule(cfg, model)
    batch = next(iter(dm.train_dataloader()))
    B, T = cfg.data.batch_size, cfg.data.max_len
    for key in ("input_ids", "labels", "position_ids", "sample_ids"):
        assert batch[key].shape == (B, T) and batch[key].dtype == torch.long
    pad = batch["sample_ids"] < 0
    assert (batch["labels"][pad] == -100).all()
    assert (batch["input_ids"] < model.backbone.vocab_size).all()


def test_each_codec_kind_has_its_own_token_cache_and_codec_dir(make_cfg):
    """The acoustic and the semantic built-in codec give other codes for the same audio: their token caches and
    codec directories never share a folder (the cache's identity check would otherwise refuse a switch)."""
    acoustic, semantic = make_cfg([]), make_cfg(["audio=builtin_semantic"])
    assert acoustic.data.cache_name == "builtin" and semantic.data.cache_name == "builtin_semantic"
    assert acoustic.audio.codec_dir != semantic.audio.codec_dir
    assert (acoustic.audio.codec_kind, semantic.audio.codec_kind) == ("acoustic", "semantic")
