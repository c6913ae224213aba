"""Continuous audio encoders (input side of the Plus variants): SenseVoice-Small from a local directory, and a
tiny random one of the same architecture for the embedded default."""

from vita_audio.audio.encoders.base import ContinuousAudioEncoder
from vita_audio.audio.encoders.sensevoice import SenseVoiceEncoder, load_sensevoice
from vita_audio.audio.encoders.tiny import tiny_sensevoice

__all__ = ["ContinuousAudioEncoder", "SenseVoiceEncoder", "load_sensevoice", "tiny_sensevoice"]
