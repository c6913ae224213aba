"""The offline English speech corpus of the embedded default recipe (`python -m vita_audio.data.corpus`)."""

from vita_audio.data.corpus.build import build_corpus
from vita_audio.data.corpus.config import TINY, CorpusConfig
from vita_audio.data.corpus.plan import plan_text

__all__ = ["TINY", "CorpusConfig", "build_corpus", "plan_text"]
