"""Every experiment runs (fast_dev_run, tiny test-size backbone, CPU), each stage from its predecessor's output."""

from pathlib import Path

import pytest
import torch

from tests.conftest import TEST_SIZE, compose_cfg
from tests.training.helpers import fit
from vita_audio.cli.common import CONFIG_DIR
from vita_audio.training.init import MissingPredecessorError

EXPERIMENTS = sorted(
    str(p.relative_to(Path(CONFIG_DIR) / "experiment").with_suffix(""))
    for p in (Path(CONFIG_DIR) / "experiment").rglob("*.yaml")
)
# every experiment ships as a chain of stages; runs go in stage order so each finds its predecessor
CHAINS = sorted({e.rsplit("_stage", 1)[0] for e in EXPERIMENTS})
FDR = ["trainer=cpu", "model/backbone=tiny", "trainer.fast_dev_run=true", "audio.codebook_size=64", *TEST_SIZE,
       "data.max_len=512"]


def corpus_paths(corpus_cache) -> list[str]:
    corpus, cache = corpus_cache
    return [f"paths.corpus_dir={corpus}", f"paths.cache_dir={cache}"]


def test_experiments_are_all_chained():
    assert {"boost", "balance", "vanilla", "qwen2_5_7b/boost"} <= set(CHAINS)
    for e in EXPERIMENTS:
        assert e.rsplit("_stage", 1)[1] in "1234", e


@pytest.mark.slow
@pytest.mark.parametrize("chain", CHAINS)
def test_experiment_chain_fast_dev_run(tmp_path, chain, tiny_corpus_cache):
    """Each experiment on its own data config (the offline corpus), tiny sizes."""
    stages = sorted(e for e in EXPERIMENTS if e.rsplit("_stage", 1)[0] == chain)
    for name in stages:
        cfg = compose_cfg(tmp_path, [f"+experiment={name}", *FDR, *corpus_paths(tiny_corpus_cache)])
        assert cfg.data._target_.endswith("VitaDataModule"), name
        model, trainer, losses = fit(cfg)
        assert len(losses) == 1 and torch.isfinite(torch.tensor(losses)).all(), name
        published = Path(cfg.callbacks.publish_stage.dirpath)
        assert (published / "final.ckpt").is_file(), name
        assert (published / "hf" / "config.json").is_file(), name


def test_missing_predecessor_names_the_command(tmp_path):
    cfg = compose_cfg(tmp_path, ["+experiment=boost_stage3", *FDR, "data=synthetic"])
    with pytest.raises(MissingPredecessorError, match=r"python train.py \+experiment=boost_stage2"):
        fit(cfg)
