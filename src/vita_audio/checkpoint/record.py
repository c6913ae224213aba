"""What a training checkpoint stores beside its weights so that the model is rebuilt from the file alone.

    {"version": 1,
     "backbone_config": {...},     the backbone's HF config (after the vocabulary resize), as plain JSON data
     "tokenizer": {file: {"text": ...} | {"base64": ...}},   the extended tokenizer's files
     "audio_encoder": {"config": {...}, "cmvn_shift": [...], "cmvn_scale": [...], "label": "..."} | None   (Plus)
     "audio_codec": {"kind", "codebook_size", "frame_rate", "identity"} | None   (the codec of the training codes)
     "publish_id": "..."}          set by PublishStage on final.ckpt / final.safetensors, pairing the two files

It goes under the key `vita_audio` of a Lightning checkpoint (so of a DeepSpeed directory's client state too) and
as the JSON metadata `vita_audio` of a weights file. With it, a `.ckpt` loads on a machine that never had the base
model's directory: the stored `pretrained:` path is never read.
"""

from __future__ import annotations

import base64
import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vita_audio.model.lm import VitaAudioLM

KEY = "vita_audio"
VERSION = 1


def tokenizer_files(tokenizer) -> dict[str, dict[str, str]]:
    """The files `tokenizer.save_pretrained` writes, as JSON-safe data (text, or base64 for binary files)."""
    with tempfile.TemporaryDirectory(prefix="vita_tok_") as tmp:
        tokenizer.save_pretrained(tmp)
        files = {}
        for f in sorted(Path(tmp).iterdir()):
            raw = f.read_bytes()
            try:
                files[f.name] = {"text": raw.decode("utf-8")}
            except UnicodeDecodeError:
                files[f.name] = {"base64": base64.b64encode(raw).decode("ascii")}
    return files


@contextlib.contextmanager
def tokenizer_dir(files: dict[str, dict[str, str]], source: str) -> Iterator[str]:
    """A temporary directory holding stored tokenizer files (for `load_text_tokenizer`)."""
    if not isinstance(files, dict) or not files:
        raise ValueError(f"{source}: the stored tokenizer holds no files")
    with tempfile.TemporaryDirectory(prefix="vita_tok_") as tmp:
        for name, entry in files.items():
            if Path(name).name != name or name.startswith("."):
                raise ValueError(f"{source}: stored tokenizer file name {name!r} is not a plain file name")
            if "text" in entry:
                (Path(tmp) / name).write_text(entry["text"], encoding="utf-8")
            else:
                (Path(tmp) / name).write_bytes(base64.b64decode(entry["base64"]))
        yield tmp


def encoder_record(encoder) -> dict[str, Any]:
    """A Plus encoder's architecture and front end (its CMVN is not in the state dict)."""
    return {"config": encoder.config_dict(), "cmvn_shift": encoder.cmvn_shift.tolist(),
            "cmvn_scale": encoder.cmvn_scale.tolist(), "label": encoder.label}


def training_record(lm: VitaAudioLM, audio_codec: dict[str, Any] | None = None,
                    tokenizer: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """The record of a model being trained (`tokenizer`: its files when already packed, else packed here)."""
    config = json.loads(lm.backbone.config.to_json_string(use_diff=False))
    return {"version": VERSION, "backbone_config": config,
            "tokenizer": tokenizer if tokenizer is not None else tokenizer_files(lm.backbone.tokenizer),
            "audio_encoder": None if lm.audio_encoder is None else encoder_record(lm.audio_encoder),
            "audio_codec": audio_codec}


def read_record(raw: Any, source: str) -> dict[str, Any] | None:
    """A stored record (a mapping, or its JSON text in safetensors metadata), checked; None when absent."""
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}: the stored `{KEY}` metadata is not JSON ({err})") from err
    if not isinstance(raw, dict) or raw.get("version") != VERSION:
        raise ValueError(f"{source}: the stored `{KEY}` record is not version {VERSION} of vita-audio's format "
                         f"(got {raw.get('version') if isinstance(raw, dict) else type(raw).__name__!r})")
    return raw
