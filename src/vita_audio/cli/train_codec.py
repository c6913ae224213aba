"""Train the built-in audio codec: `python -m vita_audio.cli.train_codec [audio=builtin|builtin_semantic]
[wavs=DIR|JSONL|[...]] [out_dir=DIR] ...`.

Composes conf/train_codec.yaml, trains (or skips a finished identical run) and checks the result against
`audio.codebook_size` / `audio.frame_rate` / `audio.codec_kind`. Returns the codec directory."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from vita_audio.audio.builtin import load_codec, train_codec
from vita_audio.cli.config_dir import CONFIG_DIR

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> Path:
    codec_cfg = instantiate(cfg.codec)
    if abs(codec_cfg.frame_rate - float(cfg.audio.frame_rate)) > 1e-6:
        raise ValueError(f"codec.frames_per_token gives {codec_cfg.frame_rate} tokens/s but audio.frame_rate is "
                         f"{cfg.audio.frame_rate}: change one of them")
    wavs = OmegaConf.to_container(cfg.wavs, resolve=True) if isinstance(cfg.wavs, ListConfig) else cfg.wavs
    out = train_codec(wavs, cfg.out_dir, codec_cfg, instantiate(cfg.train), force=cfg.force)
    # the written codec loads and matches the audio group
    load_codec(out, expected_codebook_size=cfg.audio.codebook_size, expected_kind=cfg.audio.codec_kind)
    log.info("codec ready at %s", out)
    return out


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train_codec")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
