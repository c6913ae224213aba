"""The allowlist of constructors a stored training config may name.

A training checkpoint carries its resolved Hydra config (`hyper_parameters["config"]`, a weights file's metadata, a
DeepSpeed directory's client state). Loading rebuilds the model from it, but never by importing what the file names:
every `_target_` under the stored `model` node is looked up here, by its exact string and its place in the node
(`model.backbone`, `model.mctp`, ...), and anything else is refused before any module is imported, with a message
naming the file, the place and the target.

    place               allowed target                                        built by
    model               vita_audio.training.module.SpeechLMModule             vita_audio.training (eval.py task=loss)
    model.backbone      vita_audio.model.backbone.Backbone                    this package
    model.mctp          vita_audio.model.mctp.MCTPStack.for_backbone          this package
    model.audio_encoder vita_audio.audio.encoders.{tiny_sensevoice, load_sensevoice}   this package
    model.audio_adapter vita_audio.model.adapter.AudioAdapter                 this package
    model.lora          vita_audio.model.lora.BackboneLoRA                    this package (merged on load)
    model.loss          vita_audio.model.weighting.LossWeighting              vita_audio.training
    model.optimizer     torch.optim.AdamW                                     vita_audio.training
    model.scheduler     vita_audio.training.optim.warmup_cosine_scheduler     vita_audio.training

The constructors themselves are imported by the modules that call them (`build` here, `training.restore`); this
module holds strings only, so checking a file imports nothing at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ALLOWED_TARGETS: dict[str, frozenset[str]] = {
    "model": frozenset({"vita_audio.training.module.SpeechLMModule"}),
    "model.backbone": frozenset({"vita_audio.model.backbone.Backbone"}),
    "model.mctp": frozenset({"vita_audio.model.mctp.MCTPStack.for_backbone"}),
    "model.audio_encoder": frozenset({"vita_audio.audio.encoders.tiny_sensevoice",
                                      "vita_audio.audio.encoders.load_sensevoice"}),
    "model.audio_adapter": frozenset({"vita_audio.model.adapter.AudioAdapter"}),
    "model.lora": frozenset({"vita_audio.model.lora.BackboneLoRA"}),
    "model.loss": frozenset({"vita_audio.model.weighting.LossWeighting"}),
    "model.optimizer": frozenset({"torch.optim.AdamW"}),
    "model.scheduler": frozenset({"vita_audio.training.optim.warmup_cosine_scheduler"}),
}
TINY_ENCODER = "vita_audio.audio.encoders.tiny_sensevoice"
SENSEVOICE_ENCODER = "vita_audio.audio.encoders.load_sensevoice"


class UnknownTargetError(ValueError):
    """A stored config names a constructor that is not on the allowlist."""


def check_model_config(model: Any, source: str) -> None:
    """Refuse a stored `model` config naming anything outside `ALLOWED_TARGETS` (nothing is imported here)."""
    if not isinstance(model, Mapping):
        raise ValueError(f"{source}: the stored training config has no `model` mapping (got {type(model).__name__})")
    _check_node(model, "model", source)


def _check_node(node: Mapping, place: str, source: str) -> None:
    target = node.get("_target_")
    if target is not None:
        allowed = ALLOWED_TARGETS.get(place, frozenset())
        if not isinstance(target, str) or target not in allowed:
            expected = ", ".join(sorted(allowed)) if allowed else "no constructor at all"
            raise UnknownTargetError(
                f"{source}: the stored config names {target!r} at {place}, which is not one of vita-audio's "
                f"constructors (expected {expected}). Refusing to load it: checkpoints say which of our constructors "
                "to use, they never name code to import (nothing from the file was imported or run)"
            )
    for key, value in node.items():
        _check_value(value, f"{place}.{key}", source)


def _check_value(value: Any, place: str, source: str) -> None:
    if isinstance(value, Mapping):
        _check_node(value, place, source)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_value(item, place, source)


def plain_kwargs(node: Mapping | None) -> dict[str, Any]:
    """A config node's arguments without Hydra's own keys (`_target_`, `_partial_`, `_convert_`, ...)."""
    return {k: v for k, v in (node or {}).items() if not (k.startswith("_") and k.endswith("_"))}
