"""The built-in offline codec: 25 tokens/s, EMA-VQ codebook, conv decoder to spectra + block Griffin-Lim."""

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
