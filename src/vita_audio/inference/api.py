"""The speech-level API: one model with its audio tokenizer and detokenizer, for the three tasks.

    speech = SpeechLM(load_model("artifacts/stages/boost_stage4/hf"), BuiltinTokenizer(codec), BuiltinDetokenizer(codec))
    out = speech.run("tts", "Hello there.")            # Finished: .text, .wav, .sample_rate, .codes, timings
    out = speech.run("asr", "question.wav")             # .text is the transcript
    for event in speech.stream("s2s", "question.wav"):  # TextDelta / AudioChunk as they are decoded
        ...

Prompts are the ChatML conversations the model was trained on (`data/prompt.py`, the corpus tasks):

    asr  user: "Convert the speech to text.\\n<|audio|>"     -> text
    tts  user: "Convert the text to speech.\\n{text}"        -> interleaved text + audio
    s2s  user: "<|audio|>"                                  -> interleaved text + audio (spoken answer)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from vita_audio.audio.interface import AudioDetokenizer, AudioTokenizer
from vita_audio.audio.io import check_audio, read_audio
from vita_audio.data.prompt import ASR_PROMPT, TTS_PROMPT, PromptBuilder
from vita_audio.inference.stream import AudioChunk, Finished, TextDelta, collect, stream
from vita_audio.model.lm import VitaAudioLM

TASKS = ("s2s", "asr", "tts")
AudioInput = str | Path | tuple[torch.Tensor, int]


class SpeechLM:
    """A `VitaAudioLM` with the audio codec it was trained with."""

    def __init__(self, lm: VitaAudioLM, tokenizer: AudioTokenizer | None = None,
                 detokenizer: AudioDetokenizer | None = None) -> None:
        bb = lm.backbone
        for part in (tokenizer, detokenizer):
            size = getattr(part, "codebook_size", None)
            if size is not None and size != bb.audio_vocab.codebook_size:
                raise ValueError(f"the audio codec has {size} codes but the model's vocabulary has "
                                 f"{bb.audio_vocab.codebook_size}: use the codec the model was trained with")
        self.lm, self.tokenizer, self.detokenizer = lm, tokenizer, detokenizer
        self.prompts = PromptBuilder(bb.tokenizer, bb.audio_vocab)

    def encode_audio(self, audio: AudioInput) -> torch.Tensor:
        """A wav path or (waveform, rate) -> codes (N,)."""
        if self.tokenizer is None:
            raise ValueError("speech input needs an audio tokenizer: SpeechLM(lm, tokenizer=...)")
        if isinstance(audio, (str, Path)):
            wav, sr = read_audio(audio, self.tokenizer.sample_rate)
        else:
            wav, sr = audio
            wav = check_audio(wav, sr)
        codes = self.tokenizer.encode(wav, sr)
        if codes.numel() == 0:
            raise ValueError(f"{audio if isinstance(audio, (str, Path)) else 'the audio'} is too short: it gave no "
                             "audio tokens")
        return codes

    def prompt(self, task: str, inp: AudioInput | str) -> list[int]:
        """The generation prompt ids of a task."""
        if task == "tts":
            if not isinstance(inp, str) or not inp.strip():
                raise ValueError("task tts needs a non-empty text input")
            return self.prompts.generation_prompt([("user", f"{TTS_PROMPT}\n{inp.strip()}")])
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        codes = self.encode_audio(inp)
        content = f"{ASR_PROMPT}\n<|audio|>" if task == "asr" else "<|audio|>"
        return self.prompts.generation_prompt([("user", content)], [codes])

    def stream(self, task: str, inp: AudioInput | str, **kwargs) -> Iterator[TextDelta | AudioChunk | Finished]:
        """`stream()` of the task's prompt; kwargs go to `vita_audio.inference.stream.stream` (schedule, ...)."""
        detok = None if task == "asr" else self.detokenizer
        return stream(self.lm, self.prompt(task, inp), detok, **kwargs)

    def run(self, task: str, inp: AudioInput | str, **kwargs) -> Finished:
        return collect(self.stream(task, inp, **kwargs))
