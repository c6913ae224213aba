"""Sweeps: the Optuna sweeper (two trials on synthetic data), the multirun grid and the SLURM launcher configs."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.conftest import TEST_SIZE
from vita_audio.cli.common import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[2]
SMALL = [*TEST_SIZE, "audio.codebook_size=64", "data=synthetic", "trainer.enable_progress_bar=false",
         "trainer.enable_model_summary=false"]


def hydra_cfg(overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("search", ["optuna", "optuna_mctp", "mctp_grid", "lr_sweep"])
def test_sweep_configs_compose(search):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = hydra_cfg([f"hparams_search={search}", "+experiment=boost_stage3"])
    assert cfg.optimized_metric == "val/loss" and str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    params = cfg.hydra.sweeper.params
    if search.startswith("optuna"):
        assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper") and cfg.hydra.sweeper.direction == "minimize"
        assert "model.optimizer.lr" in params and "interleave" in params
        assert ("model.mctp.num_modules" in params) == (search == "optuna_mctp")
    if search == "mctp_grid":
        assert params["model.mctp.num_modules"] == "2,5,10" and params["interleave"] == "boost,balance"


@pytest.mark.parametrize("launcher", ["slurm", "local"])
def test_launcher_configs_compose(launcher):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = hydra_cfg([f"hydra/launcher={launcher}", "+experiment=boost_stage1"])
    lc = cfg.hydra.launcher
    assert lc._target_.endswith("SlurmLauncher" if launcher == "slurm" else "LocalLauncher")
    assert lc.submitit_folder.startswith(cfg.hydra.sweep.dir)  # beside the jobs' own dirs
    if launcher == "slurm":
        assert lc.tasks_per_node == lc.gpus_per_node  # one task per GPU: what Lightning's SLURM detection expects
    # every job of a sweep has its own output dir (the job number is the subdir)
    assert OmegaConf.to_container(cfg.hydra.sweep)["subdir"] == "${hydra.job.num}"


@pytest.mark.slow
def test_optuna_two_trials_write_two_job_dirs_and_best_params(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "hparams_search=optuna", "+experiment=boost_stage1",
         "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2", "trainer.max_steps=2",
         "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "callbacks.publish_stage.export=false",
         "logger=csv", f"paths.root_dir={tmp_path}", *SMALL],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns" / "boost_stage1").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1"]
    for j in jobs:  # each trial trained, logged and published inside its own dir
        assert (j / "checkpoints" / "last.ckpt").is_file()
        assert (j / "published" / "final.safetensors").is_file()
        assert list((j / "csv").rglob("metrics.csv")), list(j.rglob("*"))
    overrides = [(j / ".hydra" / "overrides.yaml").read_text() for j in jobs]
    assert overrides[0] != overrides[1] and all("model.optimizer.lr=" in o for o in overrides)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"model.optimizer.lr", "interleave"}
    assert 0 < best["best_value"] < 20  # the val/loss the run returned
    assert not (tmp_path / "artifacts" / "stages").exists()  # the shared stage outputs are untouched
