"""Export / import of `VitaAudioLM` as an HF-style directory in the reference VITA-Audio layout.

    out_dir/
      config.json                    backbone fields + num_hidden_layers = L + N, num_nextn_predict_layers = N,
                                     model_type "<backbone>_mtp" ("qwen2_mtp" for Qwen2), architectures
      model.safetensors              or model-0000i-of-0000n.safetensors + model.safetensors.index.json
      generation_config.json         decode schedule (`mtp_inference_mode`), audio codebook size
      tokenizer files                the extended tokenizer

Parameter names (reference layout):
    backbone          model.embed_tokens.weight, model.layers.{i}.*, model.norm.weight, lm_head.weight
    MCTP module k     model.layers.{L+k}.*, mtp_projs.{k}.weight, mtp_embed_norms.{k}.weight,
                      mtp_hidden_norms.{k}.weight
    Plus: encoder     model.audio_model.model.<SenseVoice-Small's own names> (embed.weight, encoder.*), with its
                      config.yaml and am.mvn (SenseVoice format) beside config.json
    Plus: adapter     model.audio_projection.pre_proj_layernorm.{weight,bias}, model.audio_projection.mlp.{0,2}.weight
    (Plus configs: model_type "<backbone>_mtp_sensevoice", architectures "<Backbone>MTPSenseVoiceForCausalLM",
    num_nextn_predict_layers N, 0 for Plus-Vanilla)

Import reads config.json as plain JSON: an `auto_map` entry (published checkpoints point at custom code) is
ignored, nothing from the directory is ever executed.
"""

from __future__ import annotations

import contextlib
import json
import re
import struct
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from transformers import CONFIG_MAPPING

from vita_audio.model.backbone import Backbone
from vita_audio.model.lm import VitaAudioLM
from vita_audio.model.lora import has_adapters, merged_adapters
from vita_audio.model.mctp import MCTPStack
from vita_audio.model.text_tokenizer import load_text_tokenizer
from vita_audio.model.vocab import audio_token

CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
MTP_SUFFIX = "_mtp"
# config.json keys that describe the file, not the backbone
_NOT_BACKBONE_FIELDS = ("auto_map", "architectures", "model_type", "transformers_version", "_name_or_path",
                        "num_nextn_predict_layers", "backbone_model_type", "audio_codebook_size", "torch_dtype",
                        "dtype")
_NOT_BACKBONE_FIELDS += ("audio_encoder",)  # Plus: {"type", "dim"} of the continuous encoder
PLUS_SUFFIX = "_sensevoice"
_MTP_PARTS = {"projs": "mtp_projs", "embed_norms": "mtp_embed_norms", "hidden_norms": "mtp_hidden_norms"}


# -- names ---------------------------------------------------------------------------------------------------------
def _reference_name(internal: str, num_backbone_layers: int) -> str:
    """`VitaAudioLM` state-dict key -> reference-layout key."""
    if internal.startswith("backbone.model."):
        return internal[len("backbone.model.") :]
    if internal.startswith("audio_encoder."):  # Plus: SenseVoice's own parameter names under the reference prefix
        return "model.audio_model.model." + internal[len("audio_encoder.") :]
    if internal.startswith("audio_adapter."):
        return "model.audio_projection." + internal[len("audio_adapter.") :]
    m = re.fullmatch(r"mctp\.layers\.(\d+)\.(.+)", internal)
    if m:
        return f"model.layers.{num_backbone_layers + int(m.group(1))}.{m.group(2)}"
    m = re.fullmatch(r"mctp\.(projs|embed_norms|hidden_norms)\.(\d+)\.(.+)", internal)
    if m:
        return f"{_MTP_PARTS[m.group(1)]}.{m.group(2)}.{m.group(3)}"
    raise KeyError(f"no reference-layout name for parameter {internal!r}")


def _tied(lm: VitaAudioLM) -> bool:
    return bool(getattr(lm.backbone.config, "tie_word_embeddings", False))


def reference_names(lm: VitaAudioLM) -> dict[str, str]:
    """Reference-layout key -> `lm.state_dict()` key (the tied LM head, if any, is not stored)."""
    L = len(lm.backbone.layers)
    names = {}
    for internal in lm.state_dict():
        ref = _reference_name(internal, L)
        if ref == "lm_head.weight" and _tied(lm):
            continue
        names[ref] = internal
    return names


def reference_state_dict(lm: VitaAudioLM) -> dict[str, torch.Tensor]:
    """The model's tensors under reference-layout names (views of the parameters: clone before mutating)."""
    own = lm.state_dict()
    return {ref: own[internal] for ref, internal in reference_names(lm).items()}


@torch.no_grad()
def load_reference_state_dict(lm: VitaAudioLM, tensors: dict[str, torch.Tensor], source: str = "state dict") -> None:
    """Copy reference-layout tensors into `lm`, strictly: every key expected, none unexpected, shapes equal."""
    names = reference_names(lm)
    _check_keys(set(names), set(tensors), source)
    own = lm.state_dict()
    for ref, internal in names.items():
        target, value = own[internal], tensors[ref]
        if target.shape != value.shape:
            raise ValueError(
                f"{source}: {ref!r} has shape {tuple(value.shape)}, the model expects {tuple(target.shape)}"
            )
        target.copy_(value)


def _check_keys(expected: set[str], found: set[str], source: str) -> None:
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:

        def show(keys: list[str]) -> str:
            return ", ".join(keys[:20]) + (f", ... ({len(keys)} in all)" if len(keys) > 20 else "") or "none"

        raise KeyError(
            f"{source} does not match the model built from its config: missing keys: {show(missing)}; "
            f"unexpected keys: {show(unexpected)}. Check num_hidden_layers / num_nextn_predict_layers in config.json."
        )


# -- export --------------------------------------------------------------------------------------------------------
def _config_dict(lm: VitaAudioLM) -> dict[str, Any]:
    bb = lm.backbone
    cfg = bb.config.to_dict()
    for key in ("auto_map", "_name_or_path", "transformers_version"):
        cfg.pop(key, None)
    base_type = cfg["model_type"]
    L, N = len(bb.layers), lm.num_mctp_modules
    cfg["vocab_size"] = bb.vocab_size
    cfg["audio_codebook_size"] = bb.audio_vocab.codebook_size
    if N:
        cfg["model_type"] = base_type + MTP_SUFFIX
        cfg["backbone_model_type"] = base_type
        cfg["architectures"] = [f"{type(bb.model).__name__.replace('ForCausalLM', '')}MTPForCausalLM"]
        cfg["num_hidden_layers"] = L + N
        cfg["num_nextn_predict_layers"] = N
        if cfg.get("layer_types") is not None:
            cfg["layer_types"] = list(cfg["layer_types"])[:L] + ["full_attention"] * N
    else:
        cfg["architectures"] = [type(bb.model).__name__]
    if lm.audio_encoder is not None:  # Plus (also with N = 0: Plus-Vanilla), as the reference names it
        base = type(bb.model).__name__.replace("ForCausalLM", "")
        cfg.update(model_type=base_type + MTP_SUFFIX + PLUS_SUFFIX, backbone_model_type=base_type,
                   architectures=[f"{base}MTPSenseVoiceForCausalLM"], num_hidden_layers=L + N,
                   num_nextn_predict_layers=N,
                   audio_encoder={"type": "sensevoice", "dim": int(lm.audio_encoder.dim)})
    return cfg


def export_pretrained(
    lm: VitaAudioLM,
    out_dir: str | Path,
    interleave_ratio: list[int] | None = None,
    extra_generation_config: dict[str, Any] | None = None,
    max_shard_bytes: int = 5 * 1024**3,
) -> Path:
    """Write `lm` as an HF-style directory in the reference layout; returns the directory.

    `interleave_ratio` (the `text_audio_interval_ratio` of training) is stored as the default decode schedule
    `mtp_inference_mode`. Weights are sharded (with `model.safetensors.index.json`) above `max_shard_bytes`.
    LoRA adapters (`vita_audio.model.lora`) are merged into their weights: the directory is a plain checkpoint.
    """
    if has_adapters(lm):
        with merged_adapters(lm):
            return export_pretrained(lm, out_dir, interleave_ratio, extra_generation_config, max_shard_bytes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("model*.safetensors"), out / INDEX_NAME]:
        old.unlink(missing_ok=True)  # no stale shards from an earlier export

    tensors = reference_state_dict(lm)
    shards: list[list[str]] = [[]]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    weight_map = {}
    for i, names in enumerate(shards):
        file = WEIGHTS_NAME if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        # clone: safetensors refuses tensors sharing storage; only one shard is copied at a time
        save_file({n: tensors[n].detach().cpu().contiguous().clone() for n in names}, str(out / file),
                  metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(names, file))
    if len(shards) > 1:
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        (out / INDEX_NAME).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map},
                                                 indent=2) + "\n")

    (out / CONFIG_NAME).write_text(json.dumps(_config_dict(lm), indent=2, sort_keys=True) + "\n")
    gen: dict[str, Any] = {"audio_codebook_size": lm.backbone.audio_vocab.codebook_size}
    if interleave_ratio is not None:
        gen["mtp_inference_mode"] = [int(v) for v in interleave_ratio]
    tok = lm.backbone.tokenizer
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tok.unk_token_id:
        gen["eos_token_id"] = im_end
    gen.update(extra_generation_config or {})
    (out / GENERATION_CONFIG_NAME).write_text(json.dumps(gen, indent=2, sort_keys=True) + "\n")
    tok.save_pretrained(str(out))
    if lm.audio_encoder is not None:  # Plus: the encoder's config.yaml and am.mvn (its weights are in the shards)
        lm.audio_encoder.write_config_files(out)
    return out


# -- import --------------------------------------------------------------------------------------------------------
def _weight_files(path: Path) -> list[Path]:
    index = path / INDEX_NAME
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted(set(weight_map.values()))
        absent = [f for f in files if not (path / f).is_file()]
        if absent:
            raise FileNotFoundError(f"{index} names shard files that are not in {path}: {absent}")
        return [path / f for f in files]
    if (path / WEIGHTS_NAME).is_file():
        return [path / WEIGHTS_NAME]
    raise FileNotFoundError(
        f"no weights in {path}: expected {WEIGHTS_NAME} or {INDEX_NAME} with shards (only safetensors are read)"
    )


def _count_audio_tokens(tokenizer) -> int:
    vocab = tokenizer.get_vocab()
    n = 0
    while audio_token(n) in vocab:
        n += 1
    return n


@contextlib.contextmanager
def _tokenizer_only_dir(path: Path) -> Iterator[str]:
    """A temporary view of `path` without config.json (and weights), so that loading the tokenizer never reads the
    model config: a published config.json's `model_type` / `auto_map` point at custom code we do not run."""
    skip = {CONFIG_NAME, GENERATION_CONFIG_NAME, INDEX_NAME}
    with tempfile.TemporaryDirectory(prefix="vita_tok_") as tmp:
        for f in path.iterdir():
            if f.is_file() and f.name not in skip and not f.name.endswith((".safetensors", ".bin", ".pt")):
                (Path(tmp) / f.name).symlink_to(f.resolve())
        yield tmp


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


def _read_safetensors(file: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of a safetensors file, one tensor at a time, each read into its own (owned) memory.

    Plain reads instead of the memory map `safe_open` gives: mapped pages stay resident (and counted) until the
    whole file is released, and tensors viewing the map would tie the model to the file.
    """
    with open(file, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        start = 8 + header_len
        for name, info in sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                                 key=lambda kv: kv[1]["data_offsets"][0]):
            if info["dtype"] not in _SAFETENSORS_DTYPES:
                raise ValueError(f"{file}: {name!r} has dtype {info['dtype']}, which is not supported here")
            begin, end = info["data_offsets"]
            tensor = torch.empty(info["shape"], dtype=_SAFETENSORS_DTYPES[info["dtype"]])
            raw = tensor.reshape(-1).view(torch.uint8)
            if raw.numel() != end - begin:
                raise ValueError(f"{file}: {name!r} has {end - begin} bytes, its shape and dtype need {raw.numel()}")
            f.seek(start + begin)
            if raw.numel() and f.readinto(memoryview(raw.numpy())) != raw.numel():
                raise ValueError(f"{file}: truncated file (tensor {name!r})")
            yield name, tensor


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Inside: every parameter a module registers is moved to the meta device (no storage, and the init code that
    runs on it afterwards does nothing); buffers stay where they are built (CPU), so non-persistent buffers such as
    the rotary `inv_freq` are computed exactly as in an ordinary construction.

    Parameters are created by their modules (`torch.empty`, not touched) and moved one at a time, so no more than one
    parameter is ever allocated. A parameter already on meta is registered as is, which keeps tied weights tied.
    Only modules built in the calling thread are affected.
    """
    register = nn.Module.register_parameter
    thread = threading.get_ident()

    def register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register(module, name, param)
        if param is not None and param.device.type != "meta" and threading.get_ident() == thread:
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def _resolve_dtype(dtype: torch.dtype | str | None, raw: dict[str, Any], source: str) -> torch.dtype:
    """`dtype` as a torch dtype; None = the checkpoint's `torch_dtype` / `dtype` in config.json, else float32."""
    if dtype is None:
        dtype = raw.get("torch_dtype") or raw.get("dtype") or torch.float32
        if dtype == "auto":
            dtype = torch.float32
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
        resolved = getattr(torch, name, None)
        if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
            raise ValueError(f"{source}: {dtype!r} is not a floating-point torch dtype (e.g. 'bfloat16', 'float32')")
        dtype = resolved
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"{source}: dtype must be a floating-point torch.dtype or its name, got {dtype!r}")
    return dtype


def load_pretrained(path: str | Path, attn_implementation: str = "sdpa",
                    dtype: torch.dtype | str | None = None) -> VitaAudioLM:
    """Load an exported (or published reference-layout) directory as a `VitaAudioLM` in eval mode.

    N = `num_nextn_predict_layers` (0 or absent: a plain backbone). The backbone type comes from
    `backbone_model_type`, else `model_type` without its `_mtp` suffix. The audio codebook size comes from
    config.json, generation_config.json, or the count of `<|audio_i|>` tokens in the tokenizer.

    `dtype` (a torch dtype or its name, "bfloat16" / "float32" ...) is the dtype of the parameters; None = the
    `torch_dtype` / `dtype` stored in config.json, else float32. Non-persistent buffers (rotary `inv_freq`) stay
    float32, as in HF models.

    The model is built with its parameters on the meta device (no allocation, no random initialisation) and the
    checkpoint tensors are then assigned as the parameters: peak memory is about one copy of the weights.
    """
    path = Path(path).expanduser()
    if not (path / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"no {CONFIG_NAME} in {str(path)!r}: not an exported VITA-Audio / HF directory")
    raw = json.loads((path / CONFIG_NAME).read_text())
    gen_file = path / GENERATION_CONFIG_NAME
    gen = json.loads(gen_file.read_text()) if gen_file.is_file() else {}

    N = int(raw.get("num_nextn_predict_layers") or 0)
    model_type = raw.get("backbone_model_type") or str(raw.get("model_type", ""))
    model_type = model_type.removesuffix(PLUS_SUFFIX)
    if model_type.endswith(MTP_SUFFIX):
        model_type = model_type[: -len(MTP_SUFFIX)]
    if model_type not in CONFIG_MAPPING:
        raise ValueError(
            f"{path / CONFIG_NAME}: unknown backbone model type {model_type!r} (from model_type="
            f"{raw.get('model_type')!r}); set `backbone_model_type` to an HF model type such as 'qwen2'"
        )
    dtype = _resolve_dtype(dtype, raw, str(path / CONFIG_NAME))
    fields = {k: v for k, v in raw.items() if k not in _NOT_BACKBONE_FIELDS}
    L = int(fields["num_hidden_layers"]) - N
    if L < 1:
        raise ValueError(f"{path / CONFIG_NAME}: num_hidden_layers={fields['num_hidden_layers']} with "
                         f"num_nextn_predict_layers={N} leaves no backbone layer")
    fields["num_hidden_layers"] = L
    if fields.get("layer_types") is not None:
        fields["layer_types"] = list(fields["layer_types"])[:L]

    with _tokenizer_only_dir(path) as tok_dir, _parameters_on_meta():
        codebook = raw.get("audio_codebook_size") or gen.get("audio_codebook_size")
        if not codebook:
            codebook = _count_audio_tokens(load_text_tokenizer(tok_dir))
            if codebook == 0:
                raise ValueError(f"{path}: no audio_codebook_size in the configs and no <|audio_0|> in the tokenizer")
        backbone = Backbone(int(codebook), config={"model_type": model_type, **fields}, tokenizer=tok_dir,
                            attn_implementation=attn_implementation)
        stored_vocab = int(raw.get("vocab_size") or backbone.vocab_size)
        if backbone.vocab_size != stored_vocab:
            if stored_vocab < len(backbone.tokenizer):
                raise ValueError(f"{path}: vocab_size {stored_vocab} is smaller than the tokenizer "
                                 f"({len(backbone.tokenizer)} tokens)")
            backbone.model.resize_token_embeddings(stored_vocab, mean_resizing=False)
        mctp = MCTPStack(backbone.config, N) if N else None
        plus = bool(raw.get("audio_encoder")) or str(raw.get("model_type", "")).endswith(PLUS_SUFFIX)
        encoder = adapter = None
        if plus:  # the encoder's config.yaml + am.mvn sit beside config.json (SenseVoice format)
            from vita_audio.audio.encoders.sensevoice import build_from_config, read_encoder_files
            from vita_audio.model.adapter import AudioAdapter

            enc_cfg, cmvn = read_encoder_files(path)
            encoder = build_from_config(enc_cfg, cmvn, "sensevoice")
            adapter = AudioAdapter(encoder.dim, backbone.hidden_size)
        lm = VitaAudioLM(backbone, mctp, encoder, adapter)

    files = _weight_files(path)
    names = reference_names(lm)
    found: dict[str, Path] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            found.update(dict.fromkeys(f.keys(), file))
    _check_keys(set(names), set(found), str(path))
    shapes = {internal: p.shape for internal, p in lm.state_dict().items()}
    state: dict[str, torch.Tensor] = {}
    for file in files:
        for ref, value in _read_safetensors(file):
            internal = names[ref]
            if value.shape != shapes[internal]:
                raise ValueError(f"{file}: {ref!r} has shape {tuple(value.shape)}, the config implies "
                                 f"{tuple(shapes[internal])}")
            state[internal] = value.to(dtype) if value.is_floating_point() else value
            del value
    tied = _tied(lm)
    if tied:  # the tied head is not stored: it is the embedding (tied again below, as one Parameter)
        head = next(k for k in shapes if _reference_name(k, len(lm.backbone.layers)) == "lm_head.weight")
        state[head] = state[names["model.embed_tokens.weight"]]
    lm.load_state_dict(state, strict=True, assign=True)
    del state
    if tied:
        lm.backbone.model.tie_weights()
    meta = [n for n, t in [*lm.named_parameters(), *lm.named_buffers()] if t.device.type == "meta"]
    if meta:  # every parameter is in the checkpoint (strict keys); a buffer left here would be a bug
        raise RuntimeError(f"{path}: tensors left without values after loading: {meta[:10]}")
    if lm.audio_encoder is not None:
        lm.audio_encoder.requires_grad_(False)
    return lm.eval()
