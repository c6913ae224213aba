"""The audio side: codes in, waveforms out (`interface`), file I/O (`io`), the built-in codec (`builtin`)."""

from vita_audio.audio.interface import AudioDetokenizer, AudioTokenizer, StreamingSession

__all__ = ["AudioDetokenizer", "AudioTokenizer", "StreamingSession"]
