"""The built-in offline codec: EMA-VQ codebook, conv decoder to spectra + block Griffin-Lim, in two kinds:
acoustic (codes trained for reconstruction, 25 tokens/s by default) and semantic (codes also trained with a CTC loss
on espeak-ng phonemes over every voice, reconstruction on the output voice; conf/audio/builtin_semantic.yaml)."""

from vita_audio.audio.builtin.codec import (
    BuiltinDetokenizer,
    BuiltinStreamingSession,
    BuiltinTokenizer,
    load_codec,
    save_codec,
)
from vita_audio.audio.builtin.config import CodecConfig
from vita_audio.audio.builtin.train import TrainArgs, collect_wavs, train_codec

__all__ = ["BuiltinDetokenizer", "BuiltinStreamingSession", "BuiltinTokenizer", "CodecConfig", "TrainArgs",
           "collect_wavs", "load_codec", "save_codec", "train_codec"]
