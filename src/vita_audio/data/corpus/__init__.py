"""The offline English speech corpus of the embedded default recipe (`python -m vita_audio.data.corpus`)."""

from vita_audio.data.corpus.build import TINY, CorpusConfig, build_corpus, plan_text

__all__ = ["TINY", "CorpusConfig", "build_corpus", "plan_text"]
