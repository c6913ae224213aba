"""The one loader: any checkpoint -> a `VitaAudioLM` in eval mode, its weights assigned straight onto the device.

    open_checkpoint(path)                   the format, its configs read and checked (`formats`)
    on_meta: checkpoint.skeleton()          the model with no parameter storage and no random initialisation
    keys and shapes checked                 against the file's headers, before a tensor is read
    for each stored tensor: .to(device, dtype)   one tensor at a time, straight to the target device
    lm.load_state_dict(state, assign=True)  the loaded tensors become the parameters (no second copy)
    lm.generation_config                    the checkpoint's `GenerationConfig` (`generation`)

Peak host memory is about one tensor beyond what stays on the host (the whole model only when `device` is the CPU).
With a `device_map` each tensor goes to the device of its longest matching module prefix ("disk":
written to the offload folder, never kept in memory) and `accelerate.dispatch_model` adds the hooks that move
activations between devices and read offloaded weights at forward time.
`VitaAudioLM.from_pretrained`, `vita_audio.inference.load_model` and `SpeechLM.from_pretrained` all come here.
"""

from __future__ import annotations

from pathlib import Path

import torch

from accelerate import dispatch_model, infer_auto_device_map
from accelerate.utils import offload_weight, save_offload_index

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
               device: torch.device | str | None = None, attn_implementation: str = "sdpa",
               device_map: str | dict[str, int | str | torch.device] | None = None,
               max_memory: dict[int | str, int | str] | None = None,
               offload_dir: str | Path | None = None) -> VitaAudioLM:
    """Load any checkpoint for decoding (see `formats` for what `path` may be).

    `dtype`: the parameters' dtype (None = the checkpoint's: config.json's `torch_dtype` / `dtype`, a training
    checkpoint's backbone dtype, else float32); non-persistent buffers (rotary `inv_freq`) stay float32.
    `device`: where the parameters are created ("cpu", "cuda", "cuda:1"; None = the CPU). LoRA adapters of a training
    checkpoint are merged into their weights. The model comes back in eval mode with `generation_config` set.
    `device_map` (not with `device`): "auto" (accelerate's `infer_auto_device_map` over the GPUs, the CPU, then
    "disk", within `max_memory` if given, never splitting a decoder layer or the MCTP stack) or a dict module-name
    prefix -> device ("" = everything; 0 / "cuda:1" / "cpu" / "disk"), as in transformers. Each tensor goes to the
    device of its longest matching prefix; "disk" parts are written to `offload_dir` and read at forward time. The
    fast decoder reads the embedding and the LM head directly, so those two may not go to "disk".
    """
    ckpt = path if isinstance(path, Checkpoint) else open_checkpoint(path)
    source = str(ckpt.path)
    dtype = resolve_dtype(dtype, ckpt.default_dtype, source)
    if device is not None and device_map is not None:
        raise ValueError(f"{source}: give either device ({device!r}) or device_map ({device_map!r}), not both")
    dev = resolve_device(device, source)
    with on_meta():
        lm = ckpt.skeleton(attn_implementation)
    expected = {k: tuple(v.shape) for k, v in lm.state_dict().items()}
    _check_keys(ckpt, expected, ckpt.shapes())
    placement = None if device_map is None else _resolve_map(lm, device_map, max_memory, dtype, offload_dir, source)
    index: dict[str, dict] = {}
    state: dict[str, torch.Tensor] = {}
    last: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
    for name, tensor in ckpt.tensors():
        target = dev if placement is None else _placed(name, placement)
        cast = dtype if tensor.is_floating_point() else None
        if target == "disk":  # written to the offload folder, one tensor at a time; the parameter stays on meta
            index = offload_weight(tensor.to(dtype=cast), name, str(offload_dir), index)
        elif tensor is not last[0] or last[1].device != target:  # a tied head: one copy for both names
            last = (tensor, tensor.to(device=target, dtype=cast, copy=True))
        if target != "disk":
            state[name] = last[1]
    del last
    tied = bool(getattr(lm.backbone.config, "tie_word_embeddings", False))
    result = lm.load_state_dict(state, strict=False, assign=True)  # the keys were checked: only "disk" ones missing
    del state
    if placement is None:
        lm.to(dev)  # the buffers (computed on the CPU while building); the parameters are there already
    else:
        _place_buffers(lm, placement)
    if tied:
        lm.backbone.model.tie_weights()
    offloaded = set(result.missing_keys)
    tensors = [*lm.named_parameters(), *lm.named_buffers()]
    left = [n for n, t in tensors if t.device.type == "meta" and n not in offloaded]
    if left:  # every parameter is in the checkpoint (keys checked); a buffer left here would be a bug
        raise RuntimeError(f"{source}: tensors left without values after loading: {left[:10]}")
    if lm.audio_encoder is not None:
        lm.audio_encoder.requires_grad_(False)
    lm.generation_config = ckpt.generation_config(lm)
    if placement is not None:
        if index:
            save_offload_index(index, str(offload_dir))
        dispatch_model(lm, _disjoint(lm, placement), offload_dir=None if offload_dir is None else str(offload_dir))
    return lm.eval()


def _resolve_map(lm: VitaAudioLM, device_map: str | dict, max_memory: dict | None, dtype: torch.dtype,
                 offload_dir: str | Path | None, source: str) -> dict[str, torch.device | str]:
    """The map module prefix -> device ("auto" computed on the meta skeleton), every name and device checked, every
    tensor covered; "disk" needs `offload_dir` and may not hold the embedding or the LM head."""
    if device_map == "auto":
        layer = type(lm.backbone.model.model.layers[0]).__name__
        keep = [layer] + ([type(lm.mctp).__name__] if lm.mctp is not None else [])
        device_map = infer_auto_device_map(lm, max_memory=max_memory, no_split_module_classes=keep, dtype=dtype)
    elif not isinstance(device_map, dict):
        raise ValueError(f"{source}: device_map must be 'auto' or a dict module-name prefix -> device, got "
                         f"{device_map!r}")
    elif max_memory is not None:
        raise ValueError(f"{source}: max_memory is only used with device_map='auto'")
    modules = {n for n, _ in lm.named_modules()} | {n for n, _ in [*lm.named_parameters(), *lm.named_buffers()]}
    unknown = sorted(k for k in device_map if k not in modules)
    if unknown:
        raise ValueError(f"{source}: device_map names {unknown} that are not modules of this model; use module names "
                         "such as 'backbone.model.model.layers.0', 'mctp' or '' (everything)")
    placement = {k: v if v == "disk" else resolve_device(v, f"{source}: device_map[{k!r}]") for k, v in
                 device_map.items()}
    uncovered = [n for n, _ in [*lm.named_parameters(), *lm.named_buffers()] if _placed(n, placement) is None]
    if uncovered:
        raise ValueError(f"{source}: device_map places no device for {uncovered[:10]}; add their modules (or '')")
    if "disk" in placement.values():
        if offload_dir is None:
            raise ValueError(f"{source}: device_map puts modules on 'disk': give offload_dir, the folder for them")
        direct = [n for n in ("backbone.model.model.embed_tokens.weight", "backbone.model.lm_head.weight")
                  if _placed(n, placement) == "disk"]
        if direct:
            raise ValueError(f"{source}: device_map puts {direct} on 'disk'; the decoder reads the embedding and the "
                             "LM head directly, so they must be on a device (raise max_memory or place them)")
        Path(offload_dir).mkdir(parents=True, exist_ok=True)
    return placement


def _placed(name: str, placement: dict[str, torch.device | str]) -> torch.device | str | None:
    """The device of the longest prefix of `name` (whole dotted parts) in the map; None where none matches."""
    parts = name.split(".")
    for cut in range(len(parts), -1, -1):
        prefix = ".".join(parts[:cut])
        if prefix in placement:
            return placement[prefix]
    return None


def _disjoint(module: torch.nn.Module, placement: dict[str, torch.device | str], name: str = "") -> dict:
    """The map as `dispatch_model` takes it, no key inside another: the largest modules whose tensors all share one
    device (a module whose parts differ is split into its children and its own tensors)."""
    full = f"{name}." if name else ""
    devices = {full + n: _placed(full + n, placement) for n, _ in [*module.named_parameters(), *module.named_buffers()]}
    if len({str(d) for d in devices.values()}) == 1:
        return {name: next(iter(devices.values()))}
    out: dict = {}
    for child_name, child in module.named_children():
        if any(True for _ in [*child.parameters(), *child.buffers()]):
            out.update(_disjoint(child, placement, full + child_name))
    for own, _ in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
        out[full + own] = _placed(full + own, placement)
    return out


def _place_buffers(lm: VitaAudioLM, placement: dict[str, torch.device | str]) -> None:
    """Non-persistent buffers (built on the CPU, not in the checkpoint) onto their module's device ("disk": CPU)."""
    for mod_name, module in lm.named_modules():
        for buf_name, buf in module.named_buffers(recurse=False):
            target = _placed(f"{mod_name}.{buf_name}".lstrip("."), placement)
            module._buffers[buf_name] = buf.to("cpu" if target == "disk" else target)


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
