"""Start a stage from its predecessor's weights (Lightning checkpoint or exported directory)."""

from __future__ import annotations

import logging
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
    - a DeepSpeed ZeRO checkpoint directory (consolidated to fp32 first)."""
    path = Path(path)
    if (path / "config.json").is_file():
        from vita_audio.model.checkpoint import load_pretrained

        return {f"lm.{k}": v for k, v in load_pretrained(path).state_dict().items()}
    if path.is_dir():  # a DeepSpeed ZeRO checkpoint: consolidate the shards in memory (nothing is written)
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        state = get_fp32_state_dict_from_zero_checkpoint(str(path))
        return {k.removeprefix("_forward_module."): v for k, v in state.items()}
    if not path.is_file():
        how = f"Train that stage first:\n    python train.py +experiment={predecessor}\n" if predecessor else ""
        raise MissingPredecessorError(
            f"predecessor checkpoint {str(path)!r} does not exist. {how}"
            "Or point init_from=PATH at a checkpoint of your own (.ckpt, exported HF directory or ZeRO directory)."
        )
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return ckpt["state_dict"] if "state_dict" in ckpt else ckpt


def initialize_from_checkpoint(
    module: torch.nn.Module, path: str | Path, allow_missing_mctp: bool, predecessor: str | None = None
) -> set[str]:
    """Load matching weights; only MCTP parameters may be missing (they are initialised by the stage).
    Returns the names of the tensors loaded (the stage checks that what it builds on, e.g. module 0, was there)."""
    state = load_state_dict_file(path, predecessor)
    own = module.state_dict()
    # a LoRA-wrapped layer (`model/lora=backbone`) keeps its weight as `<layer>.base_layer.weight`: it loads from
    # the plain name; its adapters (`.lora_*`) start fresh (lora_B = 0: the model starts as the predecessor)
    alias = {k.replace(".base_layer.", "."): k for k in own if ".base_layer." in k}
    state = {alias.get(k, k) if k not in own else k: v for k, v in state.items()}
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state]
    bad_missing = [k for k in missing if not (allow_missing_mctp and k.startswith("lm.mctp.")) and ".lora_" not in k]
    # a predecessor with more MCTP modules than this stage is fine (their extra modules are dropped, logged)
    bad_unexpected = [k for k in unexpected if not k.startswith("lm.mctp.")]
    if bad_missing or bad_unexpected:
        raise ValueError(
            f"checkpoint {str(path)!r} does not fit this stage's model.\n"
            f"  missing ({len(bad_missing)}): {bad_missing[:8]}\n  unexpected ({len(bad_unexpected)}): "
            f"{bad_unexpected[:8]}\nDid the predecessor use the same backbone preset and audio codebook size?"
        )
    shape_errors = [k for k in state if k in own and state[k].shape != own[k].shape]
    if shape_errors:
        k = shape_errors[0]
        raise ValueError(
            f"checkpoint {str(path)!r}: shape mismatch for {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)} "
            "(different backbone size or vocabulary?)"
        )
    loaded = {k: v for k, v in state.items() if k in own}
    module.load_state_dict(loaded, strict=False)
    log.info("initialised from %s (%d tensors; %d MCTP tensors left to the stage's init; %d dropped)",
             path, len(state) - len(unexpected), len(missing), len(unexpected))
    return set(loaded)
