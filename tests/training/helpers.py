"""Test helpers: build a run from a composed config and record its per-step losses."""

from __future__ import annotations

import lightning as L
import torch

from vita_audio.cli.common import build_datamodule, build_model, build_trainer


class LossRecorder(L.Callback):
    def __init__(self, stop_after: int | None = None) -> None:
        self.losses: list[float] = []
        self.stop_after = stop_after

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))
        if self.stop_after is not None and trainer.global_step >= self.stop_after:
            trainer.should_stop = True  # simulates an interruption (the schedule still targets max_steps)


def fit(cfg, ckpt_path: str | None = None, stop_after: int | None = None, callbacks: list | None = None):
    """Run `cfg` like train.py does (plus `callbacks`), returning (module, trainer, per-step losses)."""
    L.seed_everything(cfg.seed, workers=True)
    model = build_model(cfg)
    if ckpt_path is None:
        model.initialize(cfg.init_from, cfg.predecessor)
    dm = build_datamodule(cfg, model)
    trainer = build_trainer(cfg)
    rec = LossRecorder(stop_after)
    trainer.callbacks.append(rec)
    trainer.callbacks.extend(callbacks or [])
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model, trainer, rec.losses


def logits(model, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, model.backbone.vocab_size, (2, 12), generator=g)
    model.eval()
    with torch.no_grad():
        main, levels = model.lm(x)
    return torch.cat([main.flatten(), *[lv.flatten() for lv in levels]])


def release_process_group() -> None:
    """End the process group a DeepSpeed (or DDP) test left behind, DeepSpeed's cached groups included: a later
    DeepSpeed engine in this process would otherwise broadcast over a destroyed group."""
    if not torch.distributed.is_initialized():
        return
    try:
        import deepspeed.comm as ds_comm
    except ImportError:
        ds_comm = None
    if ds_comm is not None and ds_comm.comm.cdb is not None and ds_comm.comm.cdb.is_initialized():
        ds_comm.destroy_process_group()  # also drops deepspeed.utils.groups' references
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
