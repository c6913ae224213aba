"""DeepSpeed ZeRO checkpoint directories, as Lightning's DeepSpeed strategy writes them (ZeRO-2 and ZeRO-3).

    <dir>/latest                                  the tag folder's name
    <dir>/<tag>/mp_rank_00_model_states.pt        Lightning's client state: counters, loops, `hyper_parameters`
                                                  (the training config), `vita_audio` (what rebuilds the model)
                                                  (ZeRO-3: zero_pp_rank_0_mp_rank_00_model_states.pt)
    <dir>/<tag>/*optim_states.pt                  the partitioned fp32 weights and optimizer state

The client state is memory-mapped (its module tensors are never read); the weights are consolidated to fp32 in
memory by DeepSpeed's `zero_to_fp32` (imported only here, only when they are read).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vita_audio.checkpoint.torchfile import load_mapping

MODEL_STATES = ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt")  # ZeRO-2, ZeRO-3


def _model_states(tag: Path) -> Path | None:
    return next((tag / n for n in MODEL_STATES if (tag / n).is_file()), None)


def looks_like_deepspeed(path: Path) -> bool:
    """A directory that claims to be a DeepSpeed checkpoint: `latest`, or a folder holding model states."""
    if not path.is_dir() or (path / "config.json").is_file():
        return False
    return (path / "latest").is_file() or any(_model_states(d) for d in path.iterdir() if d.is_dir())


def tag_dir(path: Path) -> Path:
    """The tag folder of a DeepSpeed checkpoint directory (the one `latest` names, else the only folder holding
    model states). A clear error names what is missing."""
    latest = path / "latest"
    if latest.is_file():
        tag = path / latest.read_text().strip()
        if not tag.is_dir():
            raise FileNotFoundError(f"{latest} names the tag folder {tag.name!r}, which is not in {path}")
    else:
        tags = [d for d in path.iterdir() if d.is_dir() and _model_states(d) is not None]
        if len(tags) != 1:
            raise FileNotFoundError(f"{path}: no `latest` file and {len(tags)} folders with model states: cannot tell "
                                    "which tag to read")
        tag = tags[0]
    if _model_states(tag) is None:
        raise FileNotFoundError(f"DeepSpeed checkpoint {path}: {tag} has no {' or '.join(MODEL_STATES)} (Lightning's "
                                "client state with the training config): copy the whole checkpoint directory")
    return tag


def client_state(path: Path) -> dict[str, Any]:
    """Lightning's client state of a DeepSpeed checkpoint (memory-mapped: its tensors are not read)."""
    return load_mapping(_model_states(tag_dir(path)), "DeepSpeed client state")


def consolidated_state(path: Path) -> dict[str, torch.Tensor]:
    """The module's state dict, consolidated to fp32 in memory (nothing is written); names as
    `SpeechLMModule.state_dict()`."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    tag = tag_dir(path)
    state = get_fp32_state_dict_from_zero_checkpoint(str(path), tag=tag.name)
    return {k.removeprefix("_forward_module."): v for k, v in state.items()}
