"""Helpers shared by the Hydra entry points (Hydra lives only in cli/ and conf/)."""

from __future__ import annotations

import logging
import os
import warnings
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig, OmegaConf

from vita_audio.cli.config_dir import CONFIG_DIR

if TYPE_CHECKING:  # infer.py and serve.py share these helpers and never import Lightning
    import lightning as L

__all__ = ["CONFIG_DIR", "build_datamodule", "build_model", "build_trainer", "finish_loggers", "instantiate_list",
           "log", "set_runtime_env"]

log = logging.getLogger("vita_audio")


def instantiate_list(cfg: DictConfig | None) -> list:
    """Instantiate every `_target_` node of a mapping (callbacks, loggers); null entries are skipped."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(node) for node in cfg.values() if node is not None and "_target_" in node]


def build_model(cfg: DictConfig):
    """The LightningModule of a config, with the resolved config stored as plain data in its hparams."""
    model = hydra.utils.instantiate(cfg.model)
    model.hparams["config"] = OmegaConf.to_container(cfg, resolve=True)
    return model


def build_datamodule(cfg: DictConfig, model) -> L.LightningDataModule:
    backbone = model.backbone
    return hydra.utils.instantiate(cfg.data, tokenizer=backbone.tokenizer, audio_vocab=backbone.audio_vocab)


def build_trainer(cfg: DictConfig) -> L.Trainer:
    callbacks = instantiate_list(cfg.get("callbacks"))
    loggers = instantiate_list(cfg.get("logger"))
    return hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)


def finish_loggers(trainer: L.Trainer) -> None:
    """Close W&B runs even when training failed (multiruns would otherwise hang on to them)."""
    for lg in trainer.loggers:
        if type(lg).__name__ == "WandbLogger":
            import wandb

            wandb.finish()


def set_runtime_env() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings from HF tokenizers
    # two notices that do not apply here: our iterable datasets' __len__ is exact per rank and worker, and
    # the pytree deprecation is Lightning's own
    warnings.filterwarnings("ignore", message=r".*IterableDataset.*has .__len__. defined")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
