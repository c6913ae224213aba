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
DEMO = ["demo/align", "demo/sft", "demo/mctp_one", "demo/mctp_all"]  # the demo's recipe, in training order


def chain_of(name: str) -> str:
    """<chain>_stage<k> (the reference's order) or a folder of its own (demo/: the demo's recipe)."""
    return name.rsplit("_stage", 1)[0] if "_stage" in name else str(Path(name).parent)


# every experiment ships as a chain of stages; runs go in stage order so each finds its predecessor
CHAINS = sorted({chain_of(e) for e in EXPERIMENTS})
# audio=builtin: the 7B recipes default to glm4voice (the published checkpoints' codec)
FDR = ["trainer=cpu", "model/backbone=tiny", "audio=builtin", "trainer.fast_dev_run=true", "audio.codebook_size=64",
       *TEST_SIZE,
       "callbacks.publish_stage.force=true",  # a fast_dev_run publishes nothing unless forced
       "data.max_len=512",
       "model.backbone.dtype=float32"]  # the 7B recipes load bf16 weights for DeepSpeed; the CPU test trains in 32-true



def in_order(chain: str) -> list[str]:
    """A chain's experiments in training order: the demo's by its recipe, the others by stage number."""
    return DEMO if chain == "demo" else sorted(e for e in EXPERIMENTS if chain_of(e) == chain)


def test_experiments_are_all_chained():
    assert {"boost", "balance", "vanilla", "qwen2_5_7b/boost", "demo"} <= set(CHAINS)
    assert sorted(e for e in EXPERIMENTS if chain_of(e) == "demo") == sorted(DEMO)
    for e in EXPERIMENTS:
        if chain_of(e) != "demo":
            assert e.rsplit("_stage", 1)[1].removesuffix("_lora") in "1234", e  # boost_stage4_lora: LoRA fine-tune


def test_demo_recipe_composes_as_a_chain(tmp_path):
    """align -> backbone-only SFT on the skills mix -> one MCTP module from the SFT backbone's last layer -> its
    clones, the backbone frozen, on the same mix; each stage starts from its predecessor's published checkpoint."""
    cfgs = {n: compose_cfg(tmp_path, [f"+experiment={n}"]) for n in DEMO}
    assert cfgs["demo/align"].get("predecessor") is None
    for prev, name in zip(DEMO, DEMO[1:]):
        assert cfgs[name].predecessor == prev and cfgs[name].init_from.endswith(f"stages/{prev}/final.ckpt"), name
    assert cfgs["demo/align"].trainer.max_steps > compose_cfg(tmp_path, ["+experiment=boost_stage1"]).trainer.max_steps
    sft, one, every = (cfgs[n].model for n in DEMO[1:])
    assert sft.get("mctp") is None and not sft.freeze.frozen  # the backbone only, everything of it trains
    assert (one.mctp.num_modules, one.mctp_init, every.mctp.num_modules, every.mctp_init) == (
        1, "copy_last_layer", 10, "clone_first")
    assert one.freeze.frozen == every.freeze.frozen == ["^backbone\\."]
    for name in DEMO[1:]:
        ratios = {s["name"]: s["ratio"] for s in cfgs[name].data.train_sources}
        assert ratios == {"sqa": 2.0, "asr": 1.0, "tts": 0.5, "text": 0.5}, (name, ratios)


@pytest.mark.slow
@pytest.mark.parametrize("chain", CHAINS)
def test_experiment_chain_fast_dev_run(tmp_path, chain, tiny_corpus_cache):
    """Each experiment on its own data config (the offline corpus), tiny sizes."""
    stages = in_order(chain)
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


@pytest.mark.parametrize("name, producer", [("boost_stage3", "boost_stage2"), ("demo/mctp_one", "demo/sft"),
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
