"""Shared fixtures: tiny components and Hydra composition with every artefact under a temp dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from vita_audio.cli.common import CONFIG_DIR
from vita_audio.model.backbone import Backbone

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))

TINY_CONFIG = dict(
    model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=False,
)

# Overrides that shrink any composed config to test size (the `tiny` preset is already CPU-sized; this is smaller).
TEST_SIZE = [
    "model.backbone.config.hidden_size=64",
    "model.backbone.config.intermediate_size=128",
    "model.backbone.config.num_hidden_layers=2",
    "data.batch_size=2",
    "data.max_len=64",
]


@pytest.fixture
def tiny_backbone() -> Backbone:
    return Backbone(audio_codebook_size=64, config=dict(TINY_CONFIG), tokenizer="tiny")


def compose_cfg(tmp_path: Path, overrides: list[str] = (), config_name: str = "train") -> DictConfig:
    """Compose a config as the CLI would, with every path under `tmp_path`."""
    base = [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}/out"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=[*base, *overrides])
    Path(cfg.paths.output_dir).mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        cfg.trainer.enable_progress_bar = False
        cfg.trainer.enable_model_summary = False
    return cfg


@pytest.fixture
def make_cfg(tmp_path):
    def _make(overrides: list[str] = (), config_name: str = "train", small: bool = True) -> DictConfig:
        extra = TEST_SIZE if small else []
        return compose_cfg(tmp_path, [*extra, *overrides], config_name)

    return _make


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A test-sized offline corpus (hibari-tts + espeak-ng, a few seconds to build), shared by the session."""
    from vita_audio.data.corpus import TINY, build_corpus

    out = tmp_path_factory.mktemp("corpus")
    stats = build_corpus(out, TINY, jobs=1)
    return out, stats


def corpus_overrides(corpus_cache) -> list[str]:
    """Overrides that point `data=corpus` at the tiny corpus and its cache, whose identity check then expects the
    stand-in tokenizer that filled it."""
    corpus, cache = corpus_cache
    return [f"paths.corpus_dir={corpus}", f"paths.cache_dir={cache}", "audio.codebook_size=64",
            "audio.tokenizer._target_=tests.fakes.EnergyTokenizer", "+audio.tokenizer.codebook_size=64"]


@pytest.fixture(scope="session")
def tiny_corpus_cache(tiny_corpus, tmp_path_factory):
    """The tiny corpus with every audio file in an audio-token cache named `builtin` (64 codes, a stand-in
    tokenizer), so `data=corpus` runs with `paths.corpus_dir=<corpus> paths.cache_dir=<cache> audio.codebook_size=64`."""
    from tests.fakes import EnergyTokenizer
    from vita_audio.data.cache import build_cache
    from vita_audio.data.tokenize import audio_paths

    corpus, _ = tiny_corpus
    cache = tmp_path_factory.mktemp("cache")
    paths, _ = audio_paths([str(p) for p in corpus.rglob("*.jsonl")])
    build_cache(paths, EnergyTokenizer(codebook_size=64), cache, "builtin", progress=False)
    return corpus, cache
