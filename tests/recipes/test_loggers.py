"""Loggers are opt-in and write under the run's output dir; W&B works offline (no key, no network)."""

from pathlib import Path

import pytest

from tests.conftest import TEST_SIZE, compose_cfg
from vita_audio.cli.train import train

RUN = ["+experiment=boost_stage1", "data=synthetic", "audio.codebook_size=64", *TEST_SIZE, "trainer.max_steps=2",
       "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "callbacks.publish_stage.export=false"]


@pytest.mark.slow
def test_wandb_offline_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_cfg(tmp_path, [*RUN, "logger=wandb"])
    metrics = train(cfg)
    assert "train/loss" in metrics and "val/loss" in metrics
    runs = list((Path(cfg.paths.output_dir) / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


def test_csv_logger_records_split_metrics(tmp_path):
    cfg = compose_cfg(tmp_path, [*RUN, "logger=csv", "trainer.log_every_n_steps=1"])
    train(cfg)
    header = (Path(cfg.paths.output_dir) / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in ("train/loss", "train/loss_main", "val/loss", "lr"):
        assert name in header, header
