"""Moved to `vita_audio.checkpoint` (the checkpoint layer above the model). This module only forwards the two names
that tests/model/test_lora.py, tests/training/test_lora_finetune.py and tests/training/test_deepspeed.py still
import from here; delete it once they import `from vita_audio.checkpoint import ...`. The forward is lazy (at
attribute access), so importing `vita_audio.model` never imports the layer above it."""

_MOVED = ("export_pretrained", "load_pretrained")


def __getattr__(name: str):
    if name in _MOVED:
        import vita_audio.checkpoint

        return getattr(vita_audio.checkpoint, name)
    raise AttributeError(f"vita_audio.model.checkpoint has no {name!r}: checkpoints live in vita_audio.checkpoint")
