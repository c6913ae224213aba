"""Reading a torch-saved mapping (a Lightning `.ckpt`, DeepSpeed's client state) without running stored code:
`weights_only=True` refuses every pickled object but tensors and plain data, and `mmap=True` leaves the tensors on
disk until they are touched (a training checkpoint's optimizer state is never read into memory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def load_mapping(path: Path, what: str) -> dict[str, Any]:
    """A torch-saved mapping read with `weights_only=True` (no pickled code runs), memory-mapped (tensors are read
    only when touched); a truncated or foreign file is a ValueError naming `path` as not a readable `what`."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file: say which and why
        raise ValueError(f"{path} is not a readable {what} ({type(err).__name__}: {err})") from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a {what} mapping")
    return obj
