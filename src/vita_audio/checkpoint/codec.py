"""The audio codec a model was trained with: stored with the checkpoint, checked against the codec it is given.

A model's audio vocabulary means the codes of one codec: decoded by another codec of the same size it speaks
garbage. Training stores the codec of its training codes (the generation config's `audio_codec`):

    {"kind": "builtin" | "glm4voice" | ..., "codebook_size": 2048, "frame_rate": 25.0,
     "identity": the audio tokenizer's `identity` (kind + rate + size + a digest of its weight files) or None}

`check_codec` compares what it can: the kind and frame rate of each part (a part's kind is the package it comes from,
`vita_audio.audio.<kind>`), and the tokenizer's identity. A detokenizer carries no identity comparable with its
tokenizer's, so it is checked by kind, size (in `SpeechLM`) and rate only; `CodecParts.from_dir` opens both halves
from one directory, so that the identity checked on the tokenizer covers the detokenizer too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vita_audio.audio.interface import AudioDetokenizer, AudioTokenizer

log = logging.getLogger(__name__)

GLM4VOICE_TOKENIZER_DIR, GLM4VOICE_DECODER_DIR = "glm-4-voice-tokenizer", "glm-4-voice-decoder"


class CodecMismatchError(ValueError):
    """The codec given differs from the one the model was trained with."""


def codec_record(kind: str | None, codebook_size: int, frame_rate: float | None,
                 identity: str | None) -> dict[str, Any]:
    return {"kind": kind, "codebook_size": int(codebook_size),
            "frame_rate": None if frame_rate is None else float(frame_rate), "identity": identity}


def codec_kind(part: object) -> str | None:
    """The codec kind of a tokenizer / detokenizer: the `vita_audio.audio.<kind>` package its class comes from."""
    parts = type(part).__module__.split(".")
    return parts[2] if len(parts) > 3 and parts[:2] == ["vita_audio", "audio"] else None


def check_codec(stored: dict[str, Any] | None, tokenizer: AudioTokenizer | None,
                detokenizer: AudioDetokenizer | None, source: str = "the model") -> None:
    """Raise `CodecMismatchError` when a given codec part is not the one `stored` names."""
    if not stored:
        if tokenizer is not None or detokenizer is not None:
            log.info("%s stores no audio codec: the codec is checked by its codebook size only", source)
        return
    for role, part in (("tokenizer", tokenizer), ("detokenizer", detokenizer)):
        if part is None:
            continue
        kind = codec_kind(part)
        if stored.get("kind") and kind is not None and kind != stored["kind"]:
            raise CodecMismatchError(f"{source} was trained with the {stored['kind']!r} audio codec but the audio "
                                     f"{role} given is a {kind!r} one ({type(part).__name__}): use audio="
                                     f"{stored['kind']}")
        rate = getattr(part, "frame_rate", None)
        if stored.get("frame_rate") and rate is not None and abs(float(rate) - stored["frame_rate"]) > 1e-6:
            raise CodecMismatchError(f"{source} was trained on {stored['frame_rate']:g} audio codes per second but "
                                     f"the audio {role} works at {float(rate):g}")
    if tokenizer is not None and stored.get("identity") and tokenizer.identity != stored["identity"]:
        raise CodecMismatchError(
            f"{source} was trained with audio tokenizer {stored['identity']!r} but the one given is "
            f"{tokenizer.identity!r}: a codec of the same size with other weights gives other codes (its speech "
            "would be garbage). Use the codec directory the model was trained with"
        )


@dataclass(frozen=True)
class CodecParts:
    """How to open a codec's two halves, each only when a task needs it."""

    kind: str | None
    tokenizer: Callable[[], AudioTokenizer]
    detokenizer: Callable[[], AudioDetokenizer]
    variant: str | None = None  # the built-in codec's kind of codes (acoustic | semantic) the config expects

    def check_variant(self, stored: dict[str, Any] | None, source: str) -> None:
        """Before opening anything: a checkpoint trained with the semantic built-in codec and a config of the
        acoustic one (or the reverse) is refused with the override that fixes it, instead of a missing directory."""
        identity = (stored or {}).get("identity") or ""
        if self.kind != "builtin" or self.variant is None or not identity.startswith("builtin-"):
            return
        trained = "semantic" if identity.startswith(("builtin-semantic-", "builtin-mem-semantic-")) else "acoustic"
        if trained != self.variant:
            group = "builtin_semantic" if trained == "semantic" else "builtin"
            raise CodecMismatchError(f"{source} was trained with the {trained} built-in codec ({identity}) but the "
                                     f"audio config is the {self.variant} one: add audio={group}")

    @classmethod
    def from_dir(cls, kind: str, codec_dir: str | Path) -> CodecParts:
        """A codec of a known kind from its directory: the built-in codec's own directory, or for GLM-4-Voice the
        directory holding `glm-4-voice-tokenizer/` and `glm-4-voice-decoder/`."""
        path = Path(codec_dir).expanduser()
        if kind == "builtin":
            from vita_audio.audio.builtin import BuiltinDetokenizer, BuiltinTokenizer

            return cls(kind, lambda: BuiltinTokenizer(path), lambda: BuiltinDetokenizer(path))
        if kind == "glm4voice":
            from vita_audio.audio.glm4voice import Glm4VoiceDetokenizer, Glm4VoiceTokenizer

            return cls(kind, lambda: Glm4VoiceTokenizer(path / GLM4VOICE_TOKENIZER_DIR),
                       lambda: Glm4VoiceDetokenizer(path / GLM4VOICE_DECODER_DIR))
        raise ValueError(f"unknown audio codec {kind!r}: choose builtin or glm4voice")

    @classmethod
    def from_config(cls, audio: Any, build: Callable[[Any], Any]) -> CodecParts:
        """The codec of the user's `audio` config group (`conf/audio/*.yaml`: the command line's, never a config stored
        in a checkpoint), built by the caller's `build` (the entry points pass Hydra's instantiate)."""
        return cls(audio.get("name"), lambda: build(audio.tokenizer), lambda: build(audio.detokenizer),
                   audio.get("codec_kind"))
