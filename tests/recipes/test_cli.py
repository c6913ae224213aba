"""The documented commands, run as a user would (subprocesses): train, multirun sweep, eval."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import TEST_SIZE

ROOT = Path(__file__).resolve().parents[2]
SMALL = [*TEST_SIZE, "audio.codebook_size=64", "data=synthetic", "trainer.enable_progress_bar=false"]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_train_then_eval(tmp_path):
    run([str(ROOT / "train.py"), "+experiment=boost_stage1", "trainer=cpu", "trainer.max_steps=3",
         "trainer.val_check_interval=3", "trainer.limit_val_batches=1", f"paths.root_dir={tmp_path}", *SMALL], tmp_path)
    final = tmp_path / "artifacts" / "stages" / "boost_stage1" / "final.ckpt"
    assert final.is_file()
    runs = list((tmp_path / "logs" / "train" / "runs" / "boost_stage1").iterdir())
    assert len(runs) == 1
    assert (runs[0] / "checkpoints" / "last.ckpt").is_file()
    assert (runs[0] / "config_resolved.yaml").is_file() and (runs[0] / "train.log").is_file()

    # the last validation of training ran on the final weights: eval on the same data gives the same numbers
    recorded = dict(line.split("\t") for line in (final.parent / "final_metrics.txt").read_text().splitlines())
    proc = run([str(ROOT / "eval.py"), "task=loss", f"ckpt_path={final}", f"paths.root_dir={tmp_path}",
                "data.batch_size=2", "trainer.limit_val_batches=1", *SMALL[len(TEST_SIZE):]], tmp_path)
    assert "val/loss" in proc.stdout
    (out,) = (tmp_path / "logs" / "eval" / "runs" / "loss").iterdir()
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    for key in ("val/loss", "val/loss_main"):
        assert metrics[key] == pytest.approx(float(recorded[key]), abs=1e-4), key  # written with 4 decimals
    assert 0 < metrics["val/loss"] < 1.1 * math.log(1096)  # near chance (log V, 1096 rows) after 3 steps


@pytest.mark.slow
def test_multirun_sweeps_learning_rate(tmp_path):
    run([str(ROOT / "train.py"), "-m", "+experiment=boost_stage1", "trainer.max_steps=2",
         "model.optimizer.lr=1e-3,3e-4", "callbacks.publish_stage.export=false", f"paths.root_dir={tmp_path}",
         *SMALL], tmp_path)
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns" / "boost_stage1").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1"]
    lrs = [(j / ".hydra" / "overrides.yaml").read_text() for j in jobs]
    assert "model.optimizer.lr=0.001" in lrs[0] and "model.optimizer.lr=0.0003" in lrs[1]
    for j in jobs:  # each job trained, saved its own checkpoint and published inside its own dir
        assert (j / "checkpoints" / "last.ckpt").is_file()
        assert (j / "published" / "final.ckpt").is_file()
    assert not (tmp_path / "artifacts" / "stages").exists()  # the shared stage outputs are untouched


def test_eval_rejects_missing_checkpoint(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "eval.py"), f"ckpt_path={tmp_path}/nope.ckpt",
                           f"paths.root_dir={tmp_path}"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "does not exist" in proc.stderr + proc.stdout


def test_eval_uses_the_training_data_settings(tmp_path):
    from tests.conftest import compose_cfg
    from tests.training.helpers import fit
    from vita_audio.cli.eval import evaluate

    cfg = compose_cfg(tmp_path, ["+experiment=balance_stage1", *SMALL, "trainer.max_steps=2",
                                 "trainer.limit_val_batches=0", "callbacks.publish_stage.export=false"])
    fit(cfg)
    final = tmp_path / "artifacts" / "stages" / "balance_stage1" / "final.ckpt"
    ev = compose_cfg(tmp_path, [f"ckpt_path={final}", "data=synthetic", "audio.codebook_size=64",
                                "trainer.limit_val_batches=1"], config_name="eval")
    assert list(ev.interleave.ratio) == [1, 10, 4, 10] and ev.data.max_len == 256  # eval.yaml defaults
    metrics = evaluate(ev)
    assert list(ev.interleave.ratio) == [1, 4, 3, 8, 4, 10] and ev.data.max_len == 64  # taken from training
    assert (tmp_path / "out" / "metrics.json").is_file()
    # the same number from the module itself on the first validation batch of those settings
    from vita_audio.cli.common import build_datamodule
    from vita_audio.training.init import restore_module

    model = restore_module(str(final)).eval()
    batch = next(iter(build_datamodule(ev, model).val_dataloader()))
    with torch.no_grad():
        out = model.compute_losses(batch, with_main=True)
    assert metrics["val/loss"] == pytest.approx(float(out["loss_main"]), rel=1e-5)
