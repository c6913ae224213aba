"""The weights-only training file: the training module's state dict as one safetensors file.

    final.safetensors (PublishStage), convert --weights
      tensors     `SpeechLMModule.state_dict()` names (`lm.*`), LoRA adapters merged into plain names
      metadata    "config": the training config (JSON), "vita_audio": the record (`record`), "format": "pt"

It starts the next stage (`init_from`, read tensor by tensor), evaluates and decodes like the `.ckpt` it came with,
but cannot resume training (no optimizer state, no counters).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from vita_audio.checkpoint.record import KEY as RECORD_KEY

CONTENT = "vita-audio stage weights (SpeechLMModule.state_dict)"


def save_weights_file(tensors: Iterable[tuple[str, torch.Tensor]], path: str | Path,
                      config: dict[str, Any] | None, record: dict[str, Any] | None) -> Path:
    """Write (name, tensor) pairs with the training config and record; a tensor sharing storage with an earlier one
    is written as its own copy (safetensors refuses shared storage). Written to a temporary name first: never a
    half-written file under the final name."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{str(path)!r}: a weights file must end in .safetensors")
    state, storages = {}, set()
    for name, tensor in tensors:
        tensor = tensor.detach().cpu().contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        state[name] = tensor.clone() if ptr in storages else tensor
        storages.add(ptr)
    meta = {"format": "pt", "content": CONTENT}
    if config is not None:
        meta["config"] = json.dumps(config)
    if record is not None:
        meta[RECORD_KEY] = json.dumps(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    return path
