"""Parameter names: `VitaAudioLM` state-dict keys <-> the reference VITA-Audio layout, and LoRA merging.

    internal (VitaAudioLM)               reference layout
    backbone.model.<name>                <name>                       (model.embed_tokens, model.layers.i, lm_head)
    mctp.layers.k.<name>                 model.layers.{L+k}.<name>    (L = backbone layers)
    mctp.{projs,embed_norms,hidden_norms}.k.<name>   mtp_{projs,embed_norms,hidden_norms}.k.<name>
    audio_encoder.<name>                 model.audio_model.model.<name>   (Plus: SenseVoice's own names)
    audio_adapter.<name>                 model.audio_projection.<name>    (Plus)

A tied LM head is not stored (it is the embedding). Training states (`SpeechLMModule.state_dict()`) carry the
internal names under `lm.`; a LoRA run's adapted layers hold `<layer>.base_layer.weight` + `lora_A` / `lora_B`,
which `merge_lora` folds into plain `<layer>.weight` (W + alpha / r * B @ A), the names a plain model has.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import torch

_MTP_PARTS = {"projs": "mtp_projs", "embed_norms": "mtp_embed_norms", "hidden_norms": "mtp_hidden_norms"}
_MTP_INTERNAL = {v: k for k, v in _MTP_PARTS.items()}
TIED_HEAD = "lm_head.weight"
EMBEDDING = "model.embed_tokens.weight"


def reference_name(internal: str, num_backbone_layers: int) -> str:
    """`VitaAudioLM` state-dict key -> reference-layout key."""
    if internal.startswith("backbone.model."):
        return internal[len("backbone.model."):]
    if internal.startswith("audio_encoder."):
        return "model.audio_model.model." + internal[len("audio_encoder."):]
    if internal.startswith("audio_adapter."):
        return "model.audio_projection." + internal[len("audio_adapter."):]
    m = re.fullmatch(r"mctp\.layers\.(\d+)\.(.+)", internal)
    if m:
        return f"model.layers.{num_backbone_layers + int(m.group(1))}.{m.group(2)}"
    m = re.fullmatch(r"mctp\.(projs|embed_norms|hidden_norms)\.(\d+)\.(.+)", internal)
    if m:
        return f"{_MTP_PARTS[m.group(1)]}.{m.group(2)}.{m.group(3)}"
    raise KeyError(f"no reference-layout name for parameter {internal!r}")


def internal_name(reference: str, num_backbone_layers: int) -> str:
    """Reference-layout key -> `VitaAudioLM` state-dict key (the inverse of `reference_name`)."""
    if reference.startswith("model.audio_model.model."):
        return "audio_encoder." + reference[len("model.audio_model.model."):]
    if reference.startswith("model.audio_projection."):
        return "audio_adapter." + reference[len("model.audio_projection."):]
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", reference)
    if m and int(m.group(1)) >= num_backbone_layers:
        return f"mctp.layers.{int(m.group(1)) - num_backbone_layers}.{m.group(2)}"
    m = re.fullmatch(r"(mtp_projs|mtp_embed_norms|mtp_hidden_norms)\.(\d+)\.(.+)", reference)
    if m:
        return f"mctp.{_MTP_INTERNAL[m.group(1)]}.{m.group(2)}.{m.group(3)}"
    return "backbone.model." + reference


def reference_names(internal_keys: Iterable[str], num_backbone_layers: int, tied: bool) -> dict[str, str]:
    """Reference-layout key -> internal key, for the keys of a model (the tied LM head, if any, left out)."""
    names = {}
    for internal in internal_keys:
        ref = reference_name(internal, num_backbone_layers)
        if not (tied and ref == TIED_HEAD):
            names[ref] = internal
    return names


def lora_scaling(rank: int, alpha: float) -> float:
    """PEFT's update scale of a plain LoRA layer."""
    return float(alpha) / int(rank)


def merge_lora(state: Iterable[tuple[str, torch.Tensor]], scaling: float | None) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of a training state with every LoRA layer merged: `<layer>.base_layer.weight` and its
    `<layer>.lora_A.<adapter>.weight` / `lora_B` become `<layer>.weight` = W + scaling * B @ A. The adapters of one
    layer are held until its three tensors are all seen; everything else passes through as it comes."""
    pending: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in state:
        m = re.fullmatch(r"(.+)\.(base_layer\.weight|lora_A\.[^.]+\.weight|lora_B\.[^.]+\.weight)", name)
        if m is None:
            if ".base_layer." in name or ".lora_" in name:
                raise ValueError(f"LoRA tensor {name!r} is not one of base_layer.weight / lora_A / lora_B: a LoRA "
                                 "layout this loader does not know")
            yield name, tensor
            continue
        if scaling is None:
            raise ValueError(f"{name!r} is a LoRA tensor but the stored config has no model.lora (rank, alpha)")
        layer, part = m.group(1), m.group(2).split(".")[0]
        parts = pending.setdefault(layer, {})
        parts[part] = tensor
        if len(parts) == 3:
            del pending[layer]
            yield f"{layer}.weight", _merged(parts["base_layer"], parts["lora_A"], parts["lora_B"], scaling)
    if pending:
        layer, parts = next(iter(pending.items()))
        raise ValueError(f"LoRA layer {layer!r} is incomplete: it has {sorted(parts)}, expected base_layer, lora_A "
                         "and lora_B")


def _merged(base: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scaling: float) -> torch.Tensor:
    """W + scaling * B @ A, computed as PEFT's merge does (half precision on the CPU goes through float32), so a
    merged checkpoint equals the adapted model's `merged_adapters` export bit for bit."""
    half_on_cpu = b.device.type == "cpu" and b.dtype in (torch.float16, torch.bfloat16)
    delta = (b.float() @ a.float() if half_on_cpu else b @ a) * scaling  # (out, r) @ (r, in) -> (out, in)
    merged = base.clone()
    merged += delta.to(base.dtype)
    return merged
