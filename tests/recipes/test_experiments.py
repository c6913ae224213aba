"""Every experiment runs (fast_dev_run, tiny test-size backbone, CPU), each stage from its predecessor's output."""

from pathlib import Path

import pytest
import torch

from tests.conftest import TEST_SIZE, compose_cfg, corpus_overrides
from tests.training.helpers import fit
from vita_audio.cli.common import CONFIG_DIR
from vita_audio.training.init import MissingPredecessorError

EXPERIMENTS = sorted(
    str(p.relative_to(Path(CONFIG_DIR) / "experiment").with_suffix(""))
    for p in (Path(CONFIG_DIR) / "experiment").rglob("*.yaml")
)
# every experiment ships as a chain of stages; runs go in stage order so each finds its predecessor
CHAINS = sorted({e.rsplit("_stage", 1)[0] for e in EXPERIMENTS})
# audio=builtin: the 7B recipes default to glm4voice (the published checkpoints' codec)
FDR = ["trainer=cpu", "model/backbone=tiny", "audio=builtin", "trainer.fast_dev_run=true", "audio.codebook_size=64", *TEST_SIZE,
       "callbacks.publish_stage.force=true",  # a fast_dev_run publishes nothing unless forced
       "data.max_len=512",
       "model.backbone.dtype=float32"]  # the 7B recipes load bf16 weights for DeepSpeed; the CPU test trains in 32-true



def test_experiments_are_all_chained():
    assert {"boost", "balance", "vanilla", "qwen2_5_7b/boost"} <= set(CHAINS)
    for e in EXPERIMENTS:
        assert e.rsplit("_stage", 1)[1].removesuffix("_lora") in "1234", e  # boost_stage4_lora: LoRA fine-tune


@pytest.mark.slow
@pytest.mark.parametrize("chain", CHAINS)
def test_experiment_chain_fast_dev_run(tmp_path, chain, tiny_corpus_cache):
    """Each experiment on its own data config (the offline corpus), tiny sizes."""
    stages = sorted(e for e in EXPERIMENTS if e.rsplit("_stage", 1)[0] == chain)
    # the 7B Plus recipes read SenseVoice-Small from a local directory: the tiny encoder stands in here
    encoder = ["model/audio_encoder=tiny"] if chain.startswith("qwen2_5_7b/plus") else []
    for name in stages:
        cfg = compose_cfg(tmp_path, [f"+experiment={name}", *FDR, *encoder, *corpus_overrides(tiny_corpus_cache)])
        assert cfg.data._target_.endswith("VitaDataModule"), name
        model, trainer, losses = fit(cfg)
        assert len(losses) == 1 and torch.isfinite(torch.tensor(losses)).all(), name
        published = Path(cfg.callbacks.publish_stage.dirpath)
        assert (published / "final.ckpt").is_file(), name
        assert (published / "hf" / "config.json").is_file(), name


@pytest.mark.parametrize("name, producer", [("boost_stage3", "boost_stage2"),
                                            ("qwen2_5_7b/boost_stage2", "qwen2_5_7b/boost_stage1")])
def test_missing_predecessor_names_the_command(tmp_path, name, producer):
    cfg = compose_cfg(tmp_path, [f"+experiment={name}", *FDR, "data=synthetic"])
    with pytest.raises(MissingPredecessorError, match=rf"python train.py \+experiment={producer}\n"):
        fit(cfg)


@pytest.mark.parametrize("name", [e for e in EXPERIMENTS if e.endswith("stage4")])
def test_stage4_experiments_train_on_the_sft_mix(tmp_path, name):
    cfg = compose_cfg(tmp_path, [f"+experiment={name}"], )
    names = {s["name"]: s["ratio"] for s in cfg.data.train_sources}
    assert names.get("sqa") == 2.0 and all(r == 0.05 for n, r in names.items() if n != "sqa"), names
