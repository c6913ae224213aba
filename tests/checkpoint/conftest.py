"""Tiny checkpoints of every format, written by hand (no Lightning): a training config, the record, the weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.conftest import TINY_CONFIG
from vita_audio.checkpoint.codec import codec_record
from vita_audio.checkpoint.record import KEY, training_record
from vita_audio.model.backbone import Backbone
from vita_audio.model.lm import VitaAudioLM
from vita_audio.model.mctp import MCTPStack

CODEBOOK = 32


def tiny(num_modules: int, seed: int = 0) -> VitaAudioLM:
    bb = Backbone(CODEBOOK, config=dict(TINY_CONFIG), tokenizer="tiny", seed=seed)
    torch.manual_seed(seed + 1)
    return VitaAudioLM(bb, MCTPStack.for_backbone(bb, num_modules) if num_modules else None).eval()


def training_config(num_modules: int, ratio: list[int], pretrained: str | None = None) -> dict:
    """The parts of a resolved training config that loaders read (what train.py stores in hparams["config"])."""
    backbone = {"_target_": "vita_audio.model.backbone.Backbone", "audio_codebook_size": CODEBOOK,
                "pretrained": pretrained, "config": None if pretrained else dict(TINY_CONFIG),
                "tokenizer": None if pretrained else "tiny"}
    model = {"_target_": "vita_audio.training.module.SpeechLMModule", "backbone": backbone,
             "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-4, "weight_decay": 0.0},
             "loss": {"_target_": "vita_audio.model.weighting.LossWeighting"}, "freeze": {"frozen": None},
             "mctp": None}
    if num_modules:
        model["mctp"] = {"_target_": "vita_audio.model.mctp.MCTPStack.for_backbone", "_partial_": True,
                         "num_modules": num_modules}
    return {"model": model, "interleave": {"ratio": list(ratio)},
            "audio": {"name": "builtin", "codebook_size": CODEBOOK, "frame_rate": 25.0}}


def record_of(lm: VitaAudioLM, identity: str | None = None) -> dict:
    return training_record(lm, codec_record("builtin", CODEBOOK, 25.0, identity))


def module_state(lm: VitaAudioLM) -> dict[str, torch.Tensor]:
    return {f"lm.{k}": v.detach().clone() for k, v in lm.state_dict().items()}


def write_ckpt(path: Path, lm: VitaAudioLM, config: dict, record: dict | None) -> Path:
    ckpt = {"state_dict": module_state(lm), "hyper_parameters": {"config": config}}
    if record is not None:
        ckpt[KEY] = record
    torch.save(ckpt, path)
    return path


def write_weights(path: Path, lm: VitaAudioLM, config: dict, record: dict | None) -> Path:
    meta = {"format": "pt", "config": json.dumps(config)}
    if record is not None:
        meta[KEY] = json.dumps(record)
    save_file(module_state(lm), str(path), metadata=meta)
    return path


def write_deepspeed_client(root: Path, config: dict, record: dict | None) -> Path:
    """A DeepSpeed directory's `latest` and client state (no ZeRO shards: enough for everything read before them)."""
    (root / "checkpoint").mkdir(parents=True)
    (root / "latest").write_text("checkpoint")
    client = {"hyper_parameters": {"config": config}, "global_step": 1}
    if record is not None:
        client[KEY] = record
    torch.save(client, root / "checkpoint" / "mp_rank_00_model_states.pt")
    return root
