"""Evaluation sets read from local copies (nothing is downloaded), as lists of `EvalSample`.

    VitaJsonl(path)        any VITA jsonl: ASR (user audio -> text), TTS (TTS prompt -> audio), spoken QA
                           (records with `answers`)
    LibriSpeech(root)      <root>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt + <utt>.flac (ASR)
    SeedTTS(meta)          Seed-TTS-eval meta.lst: utt|prompt text|prompt wav|target text (TTS)
    SpokenQA(path)         jsonl of {"question", "audio", "answers"} (LLaMA Questions, Web Questions, TriviaQA)
"""

from vita_audio.eval.adapters.librispeech import LibriSpeech
from vita_audio.eval.adapters.sample import EvalSample
from vita_audio.eval.adapters.seed_tts import SeedTTS
from vita_audio.eval.adapters.spoken_qa import SpokenQA
from vita_audio.eval.adapters.vita_jsonl import VitaJsonl

__all__ = ["EvalSample", "LibriSpeech", "SeedTTS", "SpokenQA", "VitaJsonl"]
