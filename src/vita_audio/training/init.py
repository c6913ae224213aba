"""Start a stage from its predecessor's weights (Lightning checkpoint or exported directory)."""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import torch

log = logging.getLogger(__name__)


class MissingPredecessorError(FileNotFoundError):
    pass


def load_state_dict_file(path: str | Path, predecessor: str | None = None) -> dict[str, torch.Tensor]:
    """The module `state_dict` stored at `path`, which is one of
    - a Lightning checkpoint file (loaded with `weights_only=True`),
    - an exported HF-style directory in the reference layout (`config.json` + safetensors, e.g. a published
      VITA-Audio checkpoint or a stage's `hf/` export),
    - a DeepSpeed ZeRO checkpoint directory (consolidated to fp32 first),
    - a weights-only safetensors file of the module's state dict (`final.safetensors` of a published stage)."""
    path = Path(path)
    if (path / "config.json").is_file():
        from vita_audio.model.checkpoint import load_pretrained

        return {f"lm.{k}": v for k, v in load_pretrained(path).state_dict().items()}
    if path.is_dir():  # a DeepSpeed ZeRO checkpoint: consolidate the shards in memory (nothing is written)
        from vita_audio.cli.convert import deepspeed_state_dict, is_deepspeed_checkpoint

        if not is_deepspeed_checkpoint(path):
            raise ValueError(f"{str(path)!r} is a directory but neither an exported checkpoint (config.json) nor a "
                             "DeepSpeed checkpoint (`latest` + <tag>/*model_states.pt)")
        return deepspeed_state_dict(path)
    if not path.is_file():
        how = f"Train that stage first:\n    python train.py +experiment={predecessor}\n" if predecessor else ""
        raise MissingPredecessorError(
            f"predecessor checkpoint {str(path)!r} does not exist. {how}"
            "Or point init_from=PATH at a checkpoint of your own (.safetensors, .ckpt, exported HF directory or ZeRO "
            "directory)."
        )
    if path.suffix == ".safetensors":
        from vita_audio.model.checkpoint import _read_safetensors

        return dict(_read_safetensors(path))
    # memory-mapped: only the tensors used are read (a full training checkpoint's optimizer state never is)
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return ckpt["state_dict"] if "state_dict" in ckpt else ckpt


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header (no tensor is read)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def resolve_init_path(path: str | Path) -> Path:
    """The file to read for `init_from`. A published stage's `final.ckpt` is read from the weights-only
    `final.safetensors` that `PublishStage` writes beside it (when not older than the .ckpt): same weights, read
    lazily. A `final.safetensors` that is not there falls back to the `final.ckpt` beside it (stages published by
    an older version)."""
    path = Path(path)
    weights = path.with_suffix(".safetensors")
    if (path.name == "final.ckpt" and path.exists() and weights.is_file()
            and weights.stat().st_mtime >= path.stat().st_mtime):
        log.info("init_from %s: reading the weights-only %s published with it", path, weights.name)
        return weights
    if path.suffix == ".safetensors" and not path.exists() and path.with_suffix(".ckpt").exists():
        log.warning("%s not found: reading %s instead (a stage published by an older version)",
                    path, path.with_suffix(".ckpt"))
        return path.with_suffix(".ckpt")
    return path


def initialize_from_checkpoint(
    module: torch.nn.Module, path: str | Path, allow_missing_mctp: bool, predecessor: str | None = None
) -> set[str]:
    """Load matching weights; only MCTP parameters may be missing (they are initialised by the stage).
    Returns the names of the tensors loaded (the stage checks that what it builds on, e.g. module 0, was there).

    A weights-only `.safetensors` file (what `PublishStage` writes) is read lazily: names and shapes from its
    header first, then one tensor at a time straight into the module's parameters, so a rank holds the model plus
    one tensor. A `.ckpt` is memory-mapped: its optimizer state (if any) is never read.
    """
    path = resolve_init_path(path)
    own = module.state_dict()
    # a LoRA-wrapped layer (`model/lora=backbone`) keeps its weight as `<layer>.base_layer.weight`: it loads from
    # the plain name; its adapters (`.lora_*`) start fresh (lora_B = 0: the model starts as the predecessor)
    alias = {k.replace(".base_layer.", "."): k for k in own if ".base_layer." in k}

    def target(name: str) -> str:
        return name if name in own else alias.get(name, name)

    streamed = path.suffix == ".safetensors" and path.is_file()
    if streamed:
        shapes = {target(k): s for k, s in _safetensors_shapes(path).items()}
        state = None
    else:
        state = {target(k): v for k, v in load_state_dict_file(path, predecessor).items()}
        shapes = {k: tuple(v.shape) for k, v in state.items()}
    unexpected = [k for k in shapes if k not in own]
    missing = [k for k in own if k not in shapes]
    bad_missing = [k for k in missing if not (allow_missing_mctp and k.startswith("lm.mctp.")) and ".lora_" not in k]
    # a predecessor with more MCTP modules than this stage is fine (their extra modules are dropped, logged)
    bad_unexpected = [k for k in unexpected if not k.startswith("lm.mctp.")]
    if bad_missing or bad_unexpected:
        raise ValueError(
            f"checkpoint {str(path)!r} does not fit this stage's model.\n"
            f"  missing ({len(bad_missing)}): {bad_missing[:8]}\n  unexpected ({len(bad_unexpected)}): "
            f"{bad_unexpected[:8]}\nDid the predecessor use the same backbone preset and audio codebook size?"
        )
    shape_errors = [k for k in shapes if k in own and shapes[k] != tuple(own[k].shape)]
    if shape_errors:
        k = shape_errors[0]
        raise ValueError(
            f"checkpoint {str(path)!r}: shape mismatch for {k}: {shapes[k]} vs {tuple(own[k].shape)} "
            "(different backbone size or vocabulary?)"
        )
    loaded = {k for k in shapes if k in own}
    with torch.no_grad():
        if streamed:
            from vita_audio.model.checkpoint import _read_safetensors  # plain reads, one owned tensor at a time

            for name, tensor in _read_safetensors(path):
                if target(name) in own:
                    own[target(name)].copy_(tensor)
                del tensor
        else:
            for k in loaded:
                own[k].copy_(state[k])
    del state
    log.info("initialised from %s (%d tensors; %d MCTP tensors left to the stage's init; %d dropped)",
             path, len(loaded), len(missing), len(unexpected))
    return loaded
