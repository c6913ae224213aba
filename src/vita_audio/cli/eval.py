"""Evaluate a checkpoint: `python eval.py task=loss ckpt_path=PATH [data=...]`.

checkpoint -> model (rebuilt from the config stored in it, weights_only) -> data -> trainer -> task -> metrics.json
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from vita_audio.cli.common import CONFIG_DIR, build_datamodule, build_model, build_trainer, log, set_runtime_env

TASKS = ("loss",)


def load_module(ckpt_path: str):
    """The LightningModule of a training checkpoint, loaded with weights_only=True (its training config is
    `module.hparams["config"]`)."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt_path!r} does not exist (expected a .ckpt file written by train.py)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    config = ckpt.get("hyper_parameters", {}).get("config")
    if config is None:
        raise ValueError(f"{ckpt_path!r} holds no training config: was it written by vita-audio's train.py?")
    model = build_model(OmegaConf.create(config))
    model.load_state_dict(ckpt["state_dict"])
    return model


def evaluate(cfg: DictConfig) -> dict[str, float]:
    set_runtime_env()
    if cfg.task.name not in TASKS:
        raise ValueError(f"unknown task {cfg.task.name!r}; available: {', '.join(TASKS)}")
    L.seed_everything(cfg.seed)
    model = load_module(cfg.ckpt_path)
    if cfg.data_like_training:  # the sequences the model was trained on: its interleave ratio and row length
        trained = model.hparams["config"]
        cfg.interleave.ratio = trained["interleave"]["ratio"]
        cfg.data.max_len = trained["data"]["max_len"]
        log.info("data as in training: interleave %s, max_len %d", list(cfg.interleave.ratio), cfg.data.max_len)
    datamodule = build_datamodule(cfg, model)
    trainer = build_trainer(cfg)
    results = trainer.validate(model, datamodule=datamodule)[0]
    metrics = {k: float(v) for k, v in results.items()}
    out = Path(cfg.paths.output_dir) / "metrics.json"
    out.write_text(json.dumps({"task": cfg.task.name, "ckpt_path": str(cfg.ckpt_path), "metrics": metrics}, indent=2))
    log.info("metrics written to %s", out)
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    for k, v in sorted(evaluate(cfg).items()):
        print(f"{k:28s} {v:.4f}")


if __name__ == "__main__":
    main()
