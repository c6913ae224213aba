"""Rebuilding a `VitaAudioLM` from what a checkpoint stores, with its parameters on the meta device.

    exported / published directory   config.json (+ the Plus encoder's config.yaml and am.mvn) and the tokenizer
                                     files: the backbone from its HF config fields, N = num_nextn_predict_layers
    training checkpoint              the stored training config, every `_target_` checked against the allowlist
                                     (`registry`), and the stored record (`record`): the backbone from its stored
                                     HF config and tokenizer, never from the `pretrained:` directory it names

The constructors are this package's own (Backbone, MCTPStack.for_backbone, the SenseVoice encoder, AudioAdapter):
nothing named in a file is imported. Under `on_meta()` parameters are created on the meta device (no storage, no
random initialisation) while buffers are computed on the CPU as usual (the rotary `inv_freq`, the encoder's CMVN):
the loader then assigns the checkpoint's tensors as the parameters.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from transformers import CONFIG_MAPPING

from vita_audio.checkpoint.names import lora_scaling
from vita_audio.checkpoint.record import tokenizer_dir
from vita_audio.checkpoint.registry import SENSEVOICE_ENCODER, TINY_ENCODER, check_model_config, plain_kwargs
from vita_audio.model.adapter import AudioAdapter
from vita_audio.model.backbone import Backbone
from vita_audio.model.lm import VitaAudioLM
from vita_audio.model.mctp import MCTPStack
from vita_audio.model.text_tokenizer import load_text_tokenizer
from vita_audio.model.vocab import audio_token

CONFIG_NAME = "config.json"
MTP_SUFFIX, PLUS_SUFFIX = "_mtp", "_sensevoice"
# config.json keys that describe the file, not the backbone
NOT_BACKBONE_FIELDS = ("auto_map", "architectures", "model_type", "transformers_version", "_name_or_path",
                       "num_nextn_predict_layers", "backbone_model_type", "audio_codebook_size", "torch_dtype",
                       "dtype", "audio_encoder")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def on_meta() -> contextlib.AbstractContextManager:
    """Parameters built inside go to the meta device; buffers stay real (accelerate's `init_empty_weights`)."""
    return init_empty_weights(include_buffers=False)


def _fit_vocab(backbone: Backbone, stored_vocab: int | None, source: str) -> None:
    """Give the embedding (and head) the stored number of rows (a checkpoint may hold more rows than tokens)."""
    if stored_vocab is None or backbone.vocab_size == int(stored_vocab):
        return
    if int(stored_vocab) < len(backbone.tokenizer):
        raise ValueError(f"{source}: vocab_size {stored_vocab} is smaller than the tokenizer "
                         f"({len(backbone.tokenizer)} tokens)")
    backbone.model.resize_token_embeddings(int(stored_vocab), mean_resizing=False)


# -- exported / published directories --------------------------------------------------------------------------------
@dataclass(frozen=True)
class DirectoryConfig:
    """What config.json says about the model (read as plain JSON: an `auto_map` is never followed)."""

    raw: dict[str, Any]
    model_type: str  # the backbone's HF model type
    num_modules: int
    fields: dict[str, Any]  # the backbone's HF config fields (num_hidden_layers = backbone layers only)
    plus: bool


def read_directory_config(path: Path) -> DirectoryConfig:
    file = path / CONFIG_NAME
    if not file.is_file():
        raise FileNotFoundError(f"no {CONFIG_NAME} in {str(path)!r}: not an exported VITA-Audio / HF directory")
    try:
        raw = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file} is not JSON ({err})") from err
    N = int(raw.get("num_nextn_predict_layers") or 0)
    model_type = raw.get("backbone_model_type") or str(raw.get("model_type", ""))
    model_type = model_type.removesuffix(PLUS_SUFFIX).removesuffix(MTP_SUFFIX)
    if model_type not in CONFIG_MAPPING:
        raise ValueError(f"{file}: unknown backbone model type {model_type!r} (from model_type="
                         f"{raw.get('model_type')!r}); set `backbone_model_type` to an HF model type such as 'qwen2'")
    fields = {k: v for k, v in raw.items() if k not in NOT_BACKBONE_FIELDS}
    if "num_hidden_layers" not in fields:
        raise ValueError(f"{file}: no num_hidden_layers")
    L = int(fields["num_hidden_layers"]) - N
    if L < 1:
        raise ValueError(f"{file}: num_hidden_layers={fields['num_hidden_layers']} with num_nextn_predict_layers={N} "
                         "leaves no backbone layer")
    fields["num_hidden_layers"] = L
    if fields.get("layer_types") is not None:
        fields["layer_types"] = list(fields["layer_types"])[:L]
    plus = bool(raw.get("audio_encoder")) or str(raw.get("model_type", "")).endswith(PLUS_SUFFIX)
    return DirectoryConfig(raw, model_type, N, fields, plus)


@contextlib.contextmanager
def _tokenizer_only_dir(path: Path) -> Iterator[str]:
    """A temporary view of `path` without config.json and weights, so that loading the tokenizer never reads the
    model config (a published config.json's `model_type` / `auto_map` point at custom code we do not run)."""
    skip = {CONFIG_NAME, "generation_config.json", "model.safetensors.index.json"}
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise FileNotFoundError(f"{path} has no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}, ...): copy the "
                                "tokenizer of the checkpoint into the directory")
    with tempfile.TemporaryDirectory(prefix="vita_tok_") as tmp:
        for f in path.iterdir():
            if f.is_file() and f.name not in skip and not f.name.endswith((".safetensors", ".bin", ".pt", ".py")):
                (Path(tmp) / f.name).symlink_to(f.resolve())
        yield tmp


def _count_audio_tokens(tokenizer) -> int:
    vocab = tokenizer.get_vocab()
    n = 0
    while audio_token(n) in vocab:
        n += 1
    return n


def directory_skeleton(path: Path, cfg: DirectoryConfig, attn_implementation: str) -> VitaAudioLM:
    """The model of an exported / published directory, parameters on meta (call under `on_meta()`)."""
    gen_file = path / "generation_config.json"
    gen = json.loads(gen_file.read_text()) if gen_file.is_file() else {}
    with _tokenizer_only_dir(path) as tok_dir:
        codebook = cfg.raw.get("audio_codebook_size") or gen.get("audio_codebook_size")
        if not codebook:
            codebook = _count_audio_tokens(load_text_tokenizer(tok_dir))
            if codebook == 0:
                raise ValueError(f"{path}: no audio_codebook_size in the configs and no <|audio_0|> in the tokenizer")
        backbone = Backbone(int(codebook), config={"model_type": cfg.model_type, **cfg.fields}, tokenizer=tok_dir,
                            attn_implementation=attn_implementation)
    _fit_vocab(backbone, cfg.raw.get("vocab_size"), str(path / CONFIG_NAME))
    mctp = MCTPStack(backbone.config, cfg.num_modules) if cfg.num_modules else None
    encoder = adapter = None
    if cfg.plus:  # the encoder's config.yaml + am.mvn sit beside config.json (SenseVoice format)
        from vita_audio.audio.encoders.sensevoice import build_from_config, read_encoder_files

        enc_cfg, cmvn = read_encoder_files(path)
        encoder = build_from_config(enc_cfg, cmvn, "sensevoice")
        adapter = AudioAdapter(encoder.dim, backbone.hidden_size)
    return VitaAudioLM(backbone, mctp, encoder, adapter)


# -- training checkpoints ----------------------------------------------------------------------------------------------
@dataclass
class TrainingParts:
    """The parts of a training config, built: what `VitaAudioLM` (or the training module) is composed of."""

    backbone: Backbone
    num_modules: int  # MCTP modules (0 = none)
    encoder: torch.nn.Module | None
    adapter: partial | None  # (encoder_dim, hidden_size) -> AudioAdapter


def training_parts(config: dict[str, Any], record: dict[str, Any] | None, source: str,
                   attn_implementation: str = "sdpa") -> TrainingParts:
    """Build the parts a stored training config describes (checked against the allowlist first)."""
    model = config.get("model") if isinstance(config, dict) else None
    check_model_config(model, source)
    backbone = _training_backbone(model.get("backbone"), record, source, attn_implementation)
    mctp = model.get("mctp")
    num_modules = int(plain_kwargs(mctp).get("num_modules", 0)) if mctp else 0
    encoder, adapter = _plus_parts(model, record, source)
    return TrainingParts(backbone, num_modules, encoder, adapter)


def stored_lora_scaling(model: dict[str, Any] | None) -> float | None:
    """alpha / r of a stored LoRA config (`model.lora`, defaults as `BackboneLoRA`), None without one."""
    lora = (model or {}).get("lora")
    if not lora:
        return None
    from vita_audio.model.lora import BackboneLoRA

    kw = plain_kwargs(lora)
    return lora_scaling(kw.get("rank", BackboneLoRA().rank), kw.get("alpha", BackboneLoRA().alpha))


def training_skeleton(parts: TrainingParts) -> VitaAudioLM:
    mctp = MCTPStack.for_backbone(parts.backbone, parts.num_modules) if parts.num_modules else None
    return VitaAudioLM(parts.backbone, mctp, parts.encoder, parts.adapter)


def _training_backbone(node: Any, record: dict[str, Any] | None, source: str, attn_implementation: str) -> Backbone:
    if not isinstance(node, dict):
        raise ValueError(f"{source}: the stored training config has no model.backbone")
    kwargs = plain_kwargs(node)
    kwargs.update(attn_implementation=attn_implementation, gradient_checkpointing=False)
    codebook = kwargs.pop("audio_codebook_size", None)
    if codebook is None:
        raise ValueError(f"{source}: the stored model.backbone has no audio_codebook_size")
    try:
        if record is not None and record.get("backbone_config"):
            fields = {k: v for k, v in record["backbone_config"].items() if k not in NOT_BACKBONE_FIELDS}
            fields["model_type"] = record["backbone_config"]["model_type"]
            with tokenizer_dir(record.get("tokenizer"), source) as tok:
                kwargs.update(pretrained=None, config=fields, tokenizer=tok)
                backbone = Backbone(int(codebook), **kwargs)
            _fit_vocab(backbone, fields.get("vocab_size"), source)
            return backbone
        if kwargs.get("pretrained"):
            raise ValueError(
                f"{source} was written before checkpoints carried the backbone's config and tokenizer, and its "
                f"backbone was read from {kwargs['pretrained']!r}. Loading never reads a training machine's "
                "base-model directory: load the stage's exported hf/ directory instead, or retrain / re-save the "
                "checkpoint with this version")
        return Backbone(int(codebook), **kwargs)  # a preset: config fields + the `tiny` tokenizer (or a local one)
    except TypeError as err:  # an argument Backbone does not take
        raise ValueError(f"{source}: the stored model.backbone does not fit Backbone ({err})") from err


def _plus_parts(model: dict[str, Any], record: dict[str, Any] | None, source: str):
    """(encoder, adapter factory) of a Plus config, or (None, None). Only the encoder's architecture and front end
    (CMVN) are built: its weights are in the checkpoint."""
    enc_node, ad_node = model.get("audio_encoder"), model.get("audio_adapter")
    if not enc_node:
        return None, None
    if not ad_node:
        raise ValueError(f"{source}: the training config has model.audio_encoder but no model.audio_adapter")
    from vita_audio.audio.encoders.fbank import CMVN
    from vita_audio.audio.encoders.sensevoice import build_from_config, read_encoder_files
    from vita_audio.audio.encoders.tiny import tiny_sensevoice

    kwargs = plain_kwargs(enc_node)
    stored = (record or {}).get("audio_encoder")
    if stored:
        cmvn = CMVN(torch.tensor(stored["cmvn_shift"]), torch.tensor(stored["cmvn_scale"]))
        encoder = build_from_config(stored["config"], cmvn, stored.get("label") or "sensevoice")
    elif enc_node.get("_target_") == SENSEVOICE_ENCODER:  # older checkpoints: the directory's config.yaml, am.mvn
        try:
            cfg, cmvn = read_encoder_files(kwargs["path"])
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{source} is a Plus checkpoint whose encoder was read from {kwargs['path']!r}: "
                                    f"its config.yaml and am.mvn are needed to rebuild it ({err}). Decode the "
                                    "stage's exported hf/ directory, which carries them") from None
        encoder = build_from_config(cfg, cmvn, Path(kwargs["path"]).name or "sensevoice")
    elif enc_node.get("_target_") == TINY_ENCODER:
        encoder = tiny_sensevoice(**kwargs)
    else:
        raise ValueError(f"{source}: model.audio_encoder names no encoder constructor")
    return encoder, partial(AudioAdapter, **plain_kwargs(ad_node))
