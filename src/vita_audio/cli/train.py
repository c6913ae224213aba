"""Train one stage: `python train.py +experiment=boost_stage1` (see README for more).

compose config -> seed -> model (backbone, MCTP, loss, freeze) -> data -> trainer -> fit [-> test]
Returns the value of `optimized_metric` for Hydra sweepers.
"""

from __future__ import annotations

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from vita_audio.cli.common import (
    CONFIG_DIR, build_datamodule, build_model, build_trainer, finish_loggers, log, set_runtime_env,
)


def train(cfg: DictConfig) -> dict[str, float]:
    set_runtime_env()
    # sweep jobs must not overwrite each other's (or the real) published stage
    if _is_multirun() and "publish_stage" in (cfg.get("callbacks") or {}):
        cfg.callbacks.publish_stage.dirpath = f"{cfg.paths.output_dir}/published"
    L.seed_everything(cfg.seed, workers=True)
    model = build_model(cfg)
    if cfg.ckpt_path is None:  # a fresh run starts from the predecessor stage; a resumed run from its own ckpt
        model.initialize(cfg.init_from, cfg.predecessor)
    datamodule = build_datamodule(cfg, model)
    trainer = build_trainer(cfg)
    try:
        if trainer.is_global_zero:
            log.info("output dir: %s", cfg.paths.output_dir)
            OmegaConf.save(cfg, f"{cfg.paths.output_dir}/config_resolved.yaml", resolve=True)
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
        if cfg.test:
            trainer.validate(model, datamodule=datamodule)
    finally:
        finish_loggers(trainer)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get(cfg.optimized_metric) if cfg.get("optimized_metric") else None


if __name__ == "__main__":
    main()
