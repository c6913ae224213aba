"""vita-audio: train, evaluate and run fast speech-language models of the VITA-Audio kind."""

__version__ = "0.1.0"
