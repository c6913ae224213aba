"""`load_model`: a `VitaAudioLM` for decoding from whatever a user has.

    a Lightning checkpoint (.ckpt)          written by train.py: rebuilt from the training config stored in it
    an exported directory                   `python -m vita_audio.cli.export` / a stage's `hf/` folder
    a published reference-layout directory  config.json + safetensors + tokenizer files

The model comes back in eval mode with `lm.generation_config` (a dict) holding the default decode schedule
(`mtp_inference_mode`: the interleave ratio it was trained with) and the stop id, when known.

Plus checkpoints (continuous input audio) come back with their frozen encoder and adapter (`lm.is_plus`): input
audio becomes encoder frames with `lm.encode_audio(wav, sample_rate)` (at `lm.audio_encoder.sample_rate`), one
`<|context_of_audio|>` placeholder each, and decodes with `Decoder(..., audio_features=frames)` (`SpeechLM` does
both). A Lightning `.ckpt` rebuilds the encoder from its training config (`model.audio_encoder`: the tiny encoder's
arguments, or the SenseVoice directory whose `config.yaml` / `am.mvn` it reads) and takes every weight from the
checkpoint; an exported `hf/` directory carries the encoder's `config.yaml` and `am.mvn` itself.
"""

from __future__ import annotations

import importlib
import json
from functools import partial
from pathlib import Path

import torch

from vita_audio.model.backbone import Backbone
from vita_audio.model.lm import VitaAudioLM
from vita_audio.model.mctp import MCTPStack

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
BACKBONE_TARGET = "vita_audio.model.backbone.Backbone"


def load_model(path: str | Path, dtype: torch.dtype | str | None = None,
               attn_implementation: str = "sdpa") -> VitaAudioLM:
    """Load a checkpoint for decoding (see the module docstring for what `path` may be)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"ckpt_path {str(path)!r} does not exist: give a .ckpt written by train.py, an "
                                "exported directory (python -m vita_audio.cli.export) or a published VITA-Audio "
                                "directory")
    from vita_audio.cli.convert import is_training_weights, load_lm

    if is_training_weights(p):  # a DeepSpeed checkpoint directory or a weights-only .safetensors file
        lm = load_lm(p, attn_implementation, dtype)
    elif p.is_dir():
        lm = _load_dir(p, dtype, attn_implementation)
    else:
        lm = _load_lightning(p, attn_implementation)
        if dtype is not None:
            lm = lm.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
    return lm.eval()


def _load_dir(p: Path, dtype, attn_implementation: str) -> VitaAudioLM:
    from vita_audio.model.checkpoint import load_pretrained

    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"{p} has no config.json: not an exported or published checkpoint directory "
                                "(a Lightning checkpoint is a .ckpt file)")
    if not any(p.glob("*.safetensors")):
        raise FileNotFoundError(f"{p} holds no weights (*.safetensors): copy the model's weight files there, or "
                                "export a trained checkpoint with python -m vita_audio.cli.export CKPT DIR")
    if not any((p / f).is_file() for f in TOKENIZER_FILES):
        raise FileNotFoundError(f"{p} has weights but no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}, ...): "
                                "copy the tokenizer of the checkpoint into the directory")
    lm = load_pretrained(p, attn_implementation=attn_implementation, dtype=dtype)
    gen_file = p / "generation_config.json"
    lm.generation_config = json.loads(gen_file.read_text()) if gen_file.is_file() else {}
    return lm


def _load_lightning(p: Path, attn_implementation: str) -> VitaAudioLM:
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file: say which and why
        raise ValueError(f"{p} is not a readable checkpoint ({type(err).__name__}: {err})") from err
    config = (ckpt.get("hyper_parameters") or {}).get("config") if isinstance(ckpt, dict) else None
    if not config or "state_dict" not in ckpt:
        raise ValueError(f"{p} holds no training config or state_dict: was it written by vita-audio's train.py?")
    model_cfg = config["model"]
    bb_cfg = {k: v for k, v in model_cfg["backbone"].items() if not k.startswith("_")}
    if model_cfg["backbone"].get("_target_", BACKBONE_TARGET) != BACKBONE_TARGET:
        raise ValueError(f"{p}: unsupported backbone target {model_cfg['backbone']['_target_']!r}")
    bb_cfg["attn_implementation"] = attn_implementation
    bb_cfg["gradient_checkpointing"] = False
    backbone = Backbone(**bb_cfg)
    mctp_cfg = model_cfg.get("mctp")
    mctp = MCTPStack.for_backbone(backbone, int(mctp_cfg["num_modules"])) if mctp_cfg else None
    encoder, adapter = _plus_parts(model_cfg, p)
    lm = VitaAudioLM(backbone, mctp, encoder, adapter)
    state = {k.removeprefix("lm."): v for k, v in ckpt["state_dict"].items() if k.startswith("lm.")}
    lm.load_state_dict(state, strict=True)
    gen = {"audio_codebook_size": backbone.audio_vocab.codebook_size}
    ratio = (config.get("interleave") or {}).get("ratio")
    if ratio and mctp is not None:
        gen["mtp_inference_mode"] = [int(v) for v in ratio]
    lm.generation_config = gen
    return lm


def _target(node: dict, what: str, p: Path):
    """The callable a config node's `_target_` names (imported here: no Hydra below cli/)."""
    target = str(node.get("_target_", ""))
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"{p}: the stored model.{what} names {target!r}, which cannot be imported ({err})") from err


def _plus_parts(model_cfg: dict, p: Path):
    """(encoder, adapter factory) of a Plus training config, or (None, None). The encoder's weights are loaded from
    the checkpoint afterwards: only its architecture and front end (CMVN) are built here."""
    enc_cfg, ad_cfg = model_cfg.get("audio_encoder"), model_cfg.get("audio_adapter")
    if not enc_cfg:
        return None, None
    if not ad_cfg:
        raise ValueError(f"{p}: the training config has model.audio_encoder but no model.audio_adapter")
    kwargs = {k: v for k, v in enc_cfg.items() if not k.startswith("_")}
    make = _target(enc_cfg, "audio_encoder", p)
    if getattr(make, "__name__", "") == "load_sensevoice":  # SenseVoice: config.yaml + am.mvn, weights from here
        from vita_audio.audio.encoders.sensevoice import build_from_config, read_encoder_files

        try:
            cfg, cmvn = read_encoder_files(kwargs["path"])
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{p} is a Plus checkpoint whose encoder was read from {kwargs['path']!r}: "
                                    f"its config.yaml and am.mvn are needed to rebuild it ({err}). Point "
                                    "model.audio_encoder.path there, or decode the stage's exported hf/ "
                                    "directory, which carries them") from None
        encoder = build_from_config(cfg, cmvn, Path(kwargs["path"]).name or "sensevoice")
    else:
        encoder = make(**kwargs)
    ad_kwargs = {k: v for k, v in ad_cfg.items() if not k.startswith("_")}
    return encoder, partial(_target(ad_cfg, "audio_adapter", p), **ad_kwargs)
