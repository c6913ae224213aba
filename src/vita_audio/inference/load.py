"""`load_model` of `vita_audio.inference` is the checkpoint package's one loader (`vita_audio.checkpoint.load`):
every format, weights straight onto the device, the checkpoint's `GenerationConfig` attached. Kept as a name only
for `vita_audio.inference.__init__`, which imports it from here."""

from vita_audio.checkpoint import load_model

__all__ = ["load_model"]
