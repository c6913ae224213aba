"""GLM-4-Voice audio components for the published VITA-Audio checkpoints (`audio=glm4voice`).

- `Glm4VoiceTokenizer`: the `glm-4-voice-tokenizer` directory (Whisper-VQ encoder, 12.5 codes/s, 16384 codes).
- `Glm4VoiceDetokenizer`: the `glm-4-voice-decoder` directory (flow matching to mel + HiFT to 22,050 Hz),
  offline and streaming with a bounded cost per chunk.

Both read the published files with their parameter names; nothing in those directories is ever executed.
"""

from vita_audio.audio.glm4voice.decoder import Glm4VoiceDetokenizer, Glm4VoiceStreamingSession, load_decoder
from vita_audio.audio.glm4voice.flow import FlowConfig, FlowModel
from vita_audio.audio.glm4voice.hift import HiFTConfig, HiFTGenerator
from vita_audio.audio.glm4voice.tokenizer import Glm4VoiceTokenizer
from vita_audio.audio.glm4voice.whisper_vq import WhisperVQConfig, WhisperVQEncoder, load_whisper_vq

__all__ = ["FlowConfig", "FlowModel", "Glm4VoiceDetokenizer", "Glm4VoiceStreamingSession", "Glm4VoiceTokenizer",
           "HiFTConfig", "HiFTGenerator", "WhisperVQConfig", "WhisperVQEncoder", "load_decoder", "load_whisper_vq"]
