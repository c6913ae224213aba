"""The generation settings a checkpoint carries: a `transformers.GenerationConfig`, read and written here only.

    mtp_inference_mode   the default decode schedule [a1, b1, ...]: the interleave ratio the model was trained
                         with (a custom attribute, the reference's name); absent = Boost (Vanilla without modules)
    audio_codebook_size  codes of the audio vocabulary
    audio_codec          the codec of the training codes (`checkpoint.codec`), checked by `SpeechLM`
    eos_token_id, pad_token_id   `<|im_end|>` and the tokenizer's pad id
    do_sample, temperature, top_k, top_p, repetition_penalty   sampling defaults, when the checkpoint sets them
                         (unset = None: the entry point's own defaults apply)

Every loader attaches the same object as `lm.generation_config` (an export writes it as generation_config.json, a
training checkpoint's is derived from its stored config), so every entry point decodes one checkpoint alike.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import GenerationConfig

from vita_audio.model.lm import VitaAudioLM

GENERATION_CONFIG_NAME = "generation_config.json"
SAMPLING_KEYS = ("do_sample", "temperature", "top_k", "top_p", "repetition_penalty")


def generation_config_for(lm: VitaAudioLM, interleave_ratio: Sequence[int] | None = None,
                          audio_codec: dict[str, Any] | None = None,
                          extra: dict[str, Any] | None = None) -> GenerationConfig:
    """The generation config of a model: its training interleave ratio as the default schedule, its codec, its stop
    and pad ids, then `extra` (any GenerationConfig field, e.g. sampling defaults) on top."""
    values: dict[str, Any] = {"audio_codebook_size": lm.backbone.audio_vocab.codebook_size}
    if interleave_ratio is not None:
        values["mtp_inference_mode"] = [int(v) for v in interleave_ratio]
    if audio_codec is not None:
        values["audio_codec"] = dict(audio_codec)
    tok = lm.backbone.tokenizer
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tok.unk_token_id:
        values["eos_token_id"] = im_end
    if tok.pad_token_id is not None:
        values["pad_token_id"] = int(tok.pad_token_id)
    values.update(extra or {})
    return GenerationConfig(**values)


def read_generation_config(path: Path, lm: VitaAudioLM) -> GenerationConfig:
    """The generation config of an exported / published directory: `generation_config_for(lm)` updated with every
    key of its generation_config.json (plain JSON: nothing in it is run)."""
    file = path / GENERATION_CONFIG_NAME
    stored: dict[str, Any] = {}
    if file.is_file():
        try:
            stored = json.loads(file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{file} is not JSON ({err})") from err
        if not isinstance(stored, dict):
            raise ValueError(f"{file} holds a {type(stored).__name__}, expected a JSON object")
    stored.pop("transformers_version", None)
    return generation_config_for(lm, extra=stored)


def write_generation_config(gen: GenerationConfig, out_dir: Path) -> Path:
    """generation_config.json: the keys that are set (unset sampling keys stay unset for every reader)."""
    file = out_dir / GENERATION_CONFIG_NAME
    gen.to_json_file(str(file), use_diff=True)
    return file


def stored_schedule(gen: GenerationConfig | None) -> list[int] | None:
    """The checkpoint's default decode schedule, or None."""
    value = getattr(gen, "mtp_inference_mode", None)
    return None if not value else [int(v) for v in value]


def sampling_defaults(gen: GenerationConfig | None) -> dict[str, Any]:
    """The sampling keys the checkpoint sets (arguments of `inference.Sampling`); unset keys are left out."""
    return {k: getattr(gen, k) for k in SAMPLING_KEYS if getattr(gen, k, None) is not None}


def stored_codec(gen: GenerationConfig | None) -> dict[str, Any] | None:
    return getattr(gen, "audio_codec", None)
