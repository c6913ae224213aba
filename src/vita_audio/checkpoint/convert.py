"""Converting a checkpoint: to a weights-only training file and / or an exported directory.

    convert(src, weights="w.safetensors")   a training checkpoint (.ckpt, DeepSpeed directory, weights file) ->
                                            the training module's weights with its config and record
                                            (`weights`): starts a stage, evaluates, decodes
    convert(src, export="hf/")              any checkpoint -> an HF-style directory in the reference layout
                                            (`export`), with the checkpoint's generation config

Both outputs hold weights only (no optimizer state, no counters): resume training from the original. A DeepSpeed
directory is consolidated once for both outputs.
"""

from __future__ import annotations

from pathlib import Path

from vita_audio.checkpoint.export import export_pretrained
from vita_audio.checkpoint.formats import MODULE_PREFIX, TrainingCheckpoint, open_checkpoint
from vita_audio.checkpoint.load import load_model
from vita_audio.checkpoint.weights import save_weights_file


def convert(src: str | Path, weights: str | Path | None = None, export: str | Path | None = None) -> list[Path]:
    """Write `src` as a weights file and / or an exported directory; returns what was written."""
    if weights is None and export is None:
        raise ValueError("nothing to write: give weights=FILE.safetensors and / or export=DIR")
    if weights is not None and Path(weights).suffix != ".safetensors":
        raise ValueError(f"weights {str(weights)!r}: the weights file must end in .safetensors")
    ckpt = open_checkpoint(src)
    out = []
    if weights is not None:
        if not isinstance(ckpt, TrainingCheckpoint):
            raise ValueError(f"{ckpt.path} is an {ckpt.kind}: a weights file holds a training module's state and "
                             "config; convert the training checkpoint it came from")
        config = ckpt.require_config()
        out.append(save_weights_file(((MODULE_PREFIX + k, v) for k, v in ckpt.tensors()), weights, config,
                                     ckpt.record))
    if export is not None:
        out.append(export_pretrained(load_model(ckpt), export))
    return out
