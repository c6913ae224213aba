"""The one loader: any checkpoint -> a `VitaAudioLM` in eval mode, its weights assigned straight onto the device.

    open_checkpoint(path)                   the format, its configs read and checked (`formats`)
    on_meta: checkpoint.skeleton()          the model with no parameter storage and no random initialisation
    keys and shapes checked                 against the file's headers, before a tensor is read
    for each stored tensor: .to(device, dtype)   one tensor at a time, straight to the target device
    lm.load_state_dict(state, assign=True)  the loaded tensors become the parameters (no second copy)
    lm.generation_config                    the checkpoint's `GenerationConfig` (`generation`)

Peak host memory is about one tensor beyond what stays on the host (the whole model only when `device` is the CPU).
`VitaAudioLM.from_pretrained`, `vita_audio.inference.load_model` and `SpeechLM.from_pretrained` all come here.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vita_audio.checkpoint.build import on_meta
from vita_audio.checkpoint.formats import Checkpoint, open_checkpoint
from vita_audio.model.lm import VitaAudioLM

DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def resolve_dtype(dtype: torch.dtype | str | None, default: torch.dtype, source: str) -> torch.dtype:
    """A parameter dtype the weights can take: float32, bfloat16, float16 or float64 (or its name)."""
    if dtype is None:
        return default
    resolved = getattr(torch, dtype.removeprefix("torch."), None) if isinstance(dtype, str) else dtype
    if resolved not in DTYPES:
        raise ValueError(f"{source}: dtype {dtype!r} is not a floating-point dtype the weights can take: use one of "
                         f"{', '.join(str(d).removeprefix('torch.') for d in DTYPES)}")
    return resolved


def resolve_device(device: torch.device | str | None, source: str) -> torch.device:
    """A device that exists here (an unavailable CUDA / MPS device is a clear error before anything is read)."""
    try:
        dev = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{source}: {device!r} is not a device ({err}); use 'cpu', 'cuda' or 'cuda:N'") from err
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (dev.index or 0) >= count:
            raise ValueError(f"{source}: device {str(dev)!r} is not available here ({count} CUDA device(s)): load "
                             "on 'cpu' or on one of the GPUs present")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{source}: device 'mps' is not available here: load on 'cpu'")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{source}: cannot load weights onto a {dev.type!r} device: use 'cpu' or 'cuda'")
    return dev


def load_model(path: str | Path | Checkpoint, dtype: torch.dtype | str | None = None,
               device: torch.device | str | None = "cpu", attn_implementation: str = "sdpa") -> VitaAudioLM:
    """Load any checkpoint for decoding (see `formats` for what `path` may be).

    `dtype`: the parameters' dtype (None = the checkpoint's: config.json's `torch_dtype` / `dtype`, a training
    checkpoint's backbone dtype, else float32); non-persistent buffers (rotary `inv_freq`) stay float32.
    `device`: where the parameters are created ("cpu", "cuda", "cuda:1"). LoRA adapters of a training checkpoint
    are merged into their weights. The model comes back in eval mode with `generation_config` set.
    """
    ckpt = path if isinstance(path, Checkpoint) else open_checkpoint(path)
    source = str(ckpt.path)
    dtype = resolve_dtype(dtype, ckpt.default_dtype, source)
    dev = resolve_device(device, source)
    with on_meta():
        lm = ckpt.skeleton(attn_implementation)
    expected = {k: tuple(v.shape) for k, v in lm.state_dict().items()}
    _check_keys(ckpt, expected, ckpt.shapes())
    state: dict[str, torch.Tensor] = {}
    last: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
    for name, tensor in ckpt.tensors():
        if tensor is not last[0]:  # a tied head comes as the embedding again: one copy for both names
            last = (tensor, tensor.to(device=dev, dtype=dtype if tensor.is_floating_point() else None, copy=True))
        state[name] = last[1]
    del last
    tied = bool(getattr(lm.backbone.config, "tie_word_embeddings", False))
    lm.load_state_dict(state, strict=True, assign=True)
    del state
    lm.to(dev)  # the buffers (computed on the CPU while building); the parameters are there already
    if tied:
        lm.backbone.model.tie_weights()
    left = [n for n, t in [*lm.named_parameters(), *lm.named_buffers()] if t.device.type == "meta"]
    if left:  # every parameter is in the checkpoint (keys checked); a buffer left here would be a bug
        raise RuntimeError(f"{source}: tensors left without values after loading: {left[:10]}")
    if lm.audio_encoder is not None:
        lm.audio_encoder.requires_grad_(False)
    lm.generation_config = ckpt.generation_config(lm)
    return lm.eval()


def _check_keys(ckpt: Checkpoint, expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]) -> None:
    """Strict: every tensor the model has, none it lacks, the same shapes; names as the file spells them."""
    missing = sorted(ckpt.display_name(k) for k in expected.keys() - found.keys())
    unexpected = sorted(ckpt.display_name(k) for k in found.keys() - expected.keys())
    if missing or unexpected:

        def show(keys: list[str]) -> str:
            return ", ".join(keys[:20]) + (f", ... ({len(keys)} in all)" if len(keys) > 20 else "") or "none"

        raise KeyError(f"{ckpt.path} ({ckpt.kind}) does not match the model built from its config: missing keys: "
                       f"{show(missing)}; unexpected keys: {show(unexpected)}. Check num_hidden_layers / "
                       "num_nextn_predict_layers (or the stored training config) against the weights")
    for name, shape in expected.items():
        if found[name] != shape:
            raise ValueError(f"{ckpt.path}: {ckpt.display_name(name)!r} has shape {found[name]}, the config implies "
                             f"{shape}")
