"""Export a `VitaAudioLM` as an HF-style directory in the reference VITA-Audio layout (`names`).

    out_dir/
      config.json                  backbone fields + num_hidden_layers = L + N, num_nextn_predict_layers = N,
                                   model_type "<backbone>_mtp" ("qwen2_mtp"), architectures; Plus:
                                   "<backbone>_mtp_sensevoice" and `audio_encoder` {"type", "dim"}
      model.safetensors            or model-0000i-of-0000n.safetensors + model.safetensors.index.json, written by
                                   `huggingface_hub.save_torch_state_dict` (sharding, index, stale shards removed)
      generation_config.json       the model's `GenerationConfig` (`generation`): schedule, codec, stop ids
      tokenizer files              the extended tokenizer
      config.yaml, am.mvn          Plus: the encoder's architecture and CMVN (its weights are in the shards)

LoRA adapters are merged into their weights: the directory is a plain checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import save_torch_state_dict

from vita_audio.checkpoint.build import CONFIG_NAME, MTP_SUFFIX, PLUS_SUFFIX
from vita_audio.checkpoint.generation import generation_config_for, write_generation_config
from vita_audio.checkpoint.names import reference_names
from vita_audio.model.lm import VitaAudioLM
from vita_audio.model.lora import has_adapters, merged_adapters

WEIGHTS_PATTERN = "model{suffix}.safetensors"


def _tied(lm: VitaAudioLM) -> bool:
    return bool(getattr(lm.backbone.config, "tie_word_embeddings", False))


def reference_state_dict(lm: VitaAudioLM) -> dict:
    """The model's tensors under reference-layout names (views of the parameters: clone before mutating)."""
    own = lm.state_dict()
    names = reference_names(own, len(lm.backbone.layers), _tied(lm))
    return {ref: own[internal] for ref, internal in names.items()}


def _config_dict(lm: VitaAudioLM) -> dict[str, Any]:
    bb = lm.backbone
    cfg = json.loads(bb.config.to_json_string(use_diff=False))
    for key in ("auto_map", "_name_or_path", "transformers_version"):
        cfg.pop(key, None)
    base_type = cfg["model_type"]
    L, N = len(bb.layers), lm.num_mctp_modules
    base = type(bb.model).__name__.replace("ForCausalLM", "")
    cfg["vocab_size"] = bb.vocab_size
    cfg["audio_codebook_size"] = bb.audio_vocab.codebook_size
    if N or lm.audio_encoder is not None:
        cfg.update(backbone_model_type=base_type, num_hidden_layers=L + N, num_nextn_predict_layers=N)
        if cfg.get("layer_types") is not None:
            cfg["layer_types"] = list(cfg["layer_types"])[:L] + ["full_attention"] * N
    if lm.audio_encoder is not None:  # Plus (also with N = 0: Plus-Vanilla), as the reference names it
        cfg.update(model_type=base_type + MTP_SUFFIX + PLUS_SUFFIX, architectures=[f"{base}MTPSenseVoiceForCausalLM"],
                   audio_encoder={"type": "sensevoice", "dim": int(lm.audio_encoder.dim)})
    elif N:
        cfg.update(model_type=base_type + MTP_SUFFIX, architectures=[f"{base}MTPForCausalLM"])
    else:
        cfg["architectures"] = [type(bb.model).__name__]
    return cfg


def export_pretrained(lm: VitaAudioLM, out_dir: str | Path, interleave_ratio: Sequence[int] | None = None,
                      extra_generation_config: dict[str, Any] | None = None, max_shard_size: int | str = "5GB",
                      audio_codec: dict[str, Any] | None = None) -> Path:
    """Write `lm` as an HF-style directory in the reference layout; returns the directory.

    The generation config written is the model's own (`lm.generation_config`, as a loader attached it) updated with
    `interleave_ratio` (the training `text_audio_interval_ratio`: the default decode schedule `mtp_inference_mode`),
    `audio_codec` (`checkpoint.codec`) and `extra_generation_config`. Weights above `max_shard_size` (bytes or
    "5GB") are sharded with an index.
    """
    if has_adapters(lm):
        with merged_adapters(lm):
            return export_pretrained(lm, out_dir, interleave_ratio, extra_generation_config, max_shard_size,
                                     audio_codec)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # a parameter viewing a larger buffer (DeepSpeed's flat parameter groups) is copied out: safetensors stores whole
    # storages only; an ordinary parameter owns its storage and is written as it is
    tensors = {name: t.detach() if t.untyped_storage().nbytes() == t.nbytes else t.detach().clone()
               for name, t in reference_state_dict(lm).items()}
    save_torch_state_dict(tensors, out, filename_pattern=WEIGHTS_PATTERN, max_shard_size=max_shard_size,
                          metadata={"format": "pt"})
    (out / CONFIG_NAME).write_text(json.dumps(_config_dict(lm), indent=2, sort_keys=True) + "\n")
    own = getattr(lm, "generation_config", None)
    values = own.to_diff_dict() if own is not None else {}
    values.pop("transformers_version", None)
    if interleave_ratio is not None:
        values["mtp_inference_mode"] = [int(v) for v in interleave_ratio]
    if audio_codec is not None:
        values["audio_codec"] = dict(audio_codec)
    values.update(extra_generation_config or {})
    write_generation_config(generation_config_for(lm, extra=values), out)
    lm.backbone.tokenizer.save_pretrained(str(out))
    if lm.audio_encoder is not None:
        lm.audio_encoder.write_config_files(out)
    return out
