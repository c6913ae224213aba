"""`load_model`: a `VitaAudioLM` for decoding from whatever a user has.

    a Lightning checkpoint (.ckpt)          written by train.py: rebuilt from the training config stored in it
    an exported directory                   `python -m vita_audio.cli.export` / a stage's `hf/` folder
    a published reference-layout directory  config.json + safetensors + tokenizer files

The model comes back in eval mode with `lm.generation_config` (a dict) holding the default decode schedule
(`mtp_inference_mode`: the interleave ratio it was trained with) and the stop id, when known.
"""

from __future__ import annotations

import json
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
    if p.is_dir():
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
    lm = VitaAudioLM(backbone, mctp)
    state = {k.removeprefix("lm."): v for k, v in ckpt["state_dict"].items() if k.startswith("lm.")}
    lm.load_state_dict(state, strict=True)
    gen = {"audio_codebook_size": backbone.audio_vocab.codebook_size}
    ratio = (config.get("interleave") or {}).get("ratio")
    if ratio and mctp is not None:
        gen["mtp_inference_mode"] = [int(v) for v in ratio]
    lm.generation_config = gen
    return lm
