"""Public entry point for checkpoints: `from vita_audio.checkpoint import load_pretrained, export_pretrained`."""

from vita_audio.model.checkpoint import (
    export_pretrained,
    load_pretrained,
    load_reference_state_dict,
    reference_state_dict,
)

__all__ = ["export_pretrained", "load_pretrained", "load_reference_state_dict", "reference_state_dict"]
