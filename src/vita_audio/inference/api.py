"""The speech-level API: one model with its audio tokenizer and detokenizer, for the three tasks.

    speech = SpeechLM.from_pretrained("artifacts/stages/demo/mctp_all/hf", codec_dir="artifacts/codec/builtin_semantic")
    speech = SpeechLM(load_model(ckpt), BuiltinTokenizer(codec_dir), BuiltinDetokenizer(codec_dir))   # the same
    out = speech.run("tts", "Hello there.")            # Finished: .text, .wav, .sample_rate, .codes, timings
    out = speech.run("asr", "question.wav")             # .text is the transcript
    for event in speech.stream("s2s", "question.wav"):  # TextDelta / AudioChunk as they are decoded
        ...

Prompts are the ChatML conversations the model was trained on (`data/prompt.py`, the corpus tasks):

    asr  user: "Convert the speech to text.\\n<|audio|>"     -> text
    tts  user: "Convert the text to speech.\\n{text}"        -> interleaved text + audio
    s2s  user: "<|audio|>"                                  -> interleaved text + audio (spoken answer)

The `<|audio|>` of a discrete model is its input audio's codes (`tokenizer`). A Plus model (`lm.is_plus`) reads
input audio with its own frozen encoder instead: `<|begin_of_audio|>` + one `<|context_of_audio|>` per encoder
frame + `<|end_of_audio|>`, and the adapter's image of the frames enters the prefill there
(`Decoder(audio_features=...)`); it needs no audio tokenizer, and its output audio stays codes (`detokenizer`).
`SpeechLM.inputs` gives both halves: the prompt ids and the frames (None for tts and discrete models).

The codec must be the one the model was trained with: its codebook size always, and, when the checkpoint stores it
(`lm.generation_config.audio_codec`), its kind, frame rate and the tokenizer's identity (`checkpoint.codec`); a
mismatch is a clear error instead of speech made of another codec's codes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from vita_audio.audio.interface import AudioDetokenizer, AudioTokenizer
from vita_audio.audio.io import check_audio, read_audio
from vita_audio.checkpoint import load_model
from vita_audio.checkpoint.codec import CodecParts, check_codec
from vita_audio.checkpoint.generation import stored_codec
from vita_audio.data.prompt import ASR_PROMPT, TTS_PROMPT, PromptBuilder
from vita_audio.inference.stream import AudioChunk, Finished, TextDelta, collect, stream
from vita_audio.model.lm import VitaAudioLM

TASKS = ("s2s", "asr", "tts")
# a wav path, (waveform, rate), or (Plus models only) encoder frames (N, D) float computed beforehand
AudioInput = str | Path | tuple[torch.Tensor, int] | torch.Tensor


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
        check_codec(stored_codec(getattr(lm, "generation_config", None)), tokenizer, detokenizer)
        self.lm, self.tokenizer, self.detokenizer = lm, tokenizer, detokenizer
        self.prompts = PromptBuilder(bb.tokenizer, bb.audio_vocab)

    @classmethod
    def from_pretrained(cls, path: str | Path, audio: str | CodecParts | None = None,
                        codec_dir: str | Path | None = None, task: str | None = None,
                        dtype: torch.dtype | str | None = None, device: torch.device | str | None = None,
                        attn_implementation: str = "sdpa", device_map: str | dict | None = None,
                        max_memory: dict | None = None, offload_dir: str | Path | None = None) -> SpeechLM:
        """A checkpoint with its codec, in one call.

        `audio`: the codec kind ("builtin", "glm4voice"; None = the kind stored with the checkpoint) opened from
        `codec_dir` (`CodecParts.from_dir`), or `CodecParts` (how the entry points open the codec of their config).
        Only the halves the work needs are opened: `task` "asr" needs no detokenizer, "tts" no tokenizer, and a
        Plus model reads input audio with its own encoder (no tokenizer); None = everything the model can use.
        `device` / `device_map` / `max_memory` / `offload_dir`: where the weights go, as in `load_model`.
        """
        lm = load_model(path, dtype=dtype, device=device, attn_implementation=attn_implementation,
                        device_map=device_map, max_memory=max_memory, offload_dir=offload_dir)
        if task is not None and task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        needs_in = task in (None, "s2s", "asr") and not lm.is_plus
        needs_out = task in (None, "s2s", "tts")
        if not (needs_in or needs_out):
            return cls(lm)
        parts = audio if isinstance(audio, CodecParts) else _codec_from_dir(lm, audio, codec_dir, path)
        parts.check_variant(stored_codec(getattr(lm, "generation_config", None)), str(path))
        return cls(lm, parts.tokenizer() if needs_in else None, parts.detokenizer() if needs_out else None)

    @property
    def is_plus(self) -> bool:
        """Input audio through the model's continuous encoder (frames), not the audio tokenizer (codes)."""
        return self.lm.is_plus

    @property
    def input_sample_rate(self) -> int:
        """The rate input audio is read at: the Plus encoder's, else the audio tokenizer's."""
        if self.is_plus:
            return self.lm.audio_encoder.sample_rate
        if self.tokenizer is None or getattr(self.lm.backbone.audio_vocab, "context", None) is not None:
            raise ValueError(self._no_input_path())
        return self.tokenizer.sample_rate

    def _no_input_path(self) -> str:
        if getattr(self.lm.backbone.audio_vocab, "context", None) is not None:
            return ("this model has a Plus vocabulary (<|context_of_audio|>) but no continuous audio encoder, so it "
                    "cannot read input audio: load the Plus checkpoint with load_model (a stage's final.ckpt or its "
                    "hf/ directory, which hold the encoder and adapter)")
        return "speech input needs an audio tokenizer: SpeechLM(lm, tokenizer=...)"

    def _read(self, audio: AudioInput) -> tuple[torch.Tensor, int]:
        """A wav path (resampled to `input_sample_rate`) or (waveform, rate) -> (waveform, rate), checked."""
        if isinstance(audio, torch.Tensor):
            raise ValueError("a bare tensor as audio input is read as encoder frames (N, D), but "
                             + ("it is not a 2-D float tensor: give (waveform, sample_rate) for a waveform"
                                if self.is_plus else "this model has no continuous audio encoder (not a Plus "
                                "variant): its audio inputs are audio tokens; give a wav path or (waveform, "
                                "sample_rate)"))
        rate = self.input_sample_rate  # also: can this model read input audio at all
        if isinstance(audio, (str, Path)):
            return read_audio(audio, rate)
        wav, sr = audio
        return check_audio(wav, sr), sr

    def encode_audio(self, audio: AudioInput) -> torch.Tensor:
        """A wav path or (waveform, rate) -> what the prompt holds for it: codes (N,) of the audio tokenizer, or,
        for a Plus model, its encoder's frames (N, D) float (a 2-D float tensor is taken as frames already)."""
        if self.is_plus and isinstance(audio, torch.Tensor) and audio.dim() == 2 and audio.is_floating_point():
            if audio.shape[1] != self.lm.audio_encoder.dim:
                raise ValueError(f"encoder frames of width {audio.shape[1]} given, this model's encoder gives "
                                 f"{self.lm.audio_encoder.dim}")
            return audio
        wav, sr = self._read(audio)
        if self.is_plus:
            return self.lm.encode_audio(wav, sr)
        codes = self.tokenizer.encode(wav, sr)
        if codes.numel() == 0:
            raise ValueError(f"{audio if isinstance(audio, (str, Path)) else 'the input audio'} is too short: it "
                             "gave no audio tokens")
        return codes

    def inputs(self, task: str, inp: AudioInput | str) -> tuple[list[int], torch.Tensor | None]:
        """(prompt ids, audio_features) of a task: the features are the Plus encoder's frames of the input audio
        (one per `<|context_of_audio|>` of the prompt), None for tts and for discrete-input models."""
        if task == "tts":
            if not isinstance(inp, str) or not inp.strip():
                raise ValueError("task tts needs a non-empty text input")
            return self.prompts.generation_prompt([("user", f"{TTS_PROMPT}\n{inp.strip()}")]), None
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        audio = self.encode_audio(inp)
        content = f"{ASR_PROMPT}\n<|audio|>" if task == "asr" else "<|audio|>"
        ids = self.prompts.generation_prompt([("user", content)], [audio])
        return ids, audio if self.is_plus else None

    def prompt(self, task: str, inp: AudioInput | str) -> list[int]:
        """The generation prompt ids of a task (a Plus model's frames: `inputs`)."""
        return self.inputs(task, inp)[0]

    def answer_text(self, text: str) -> list[int]:
        """The text ids of a TTS answer to `text`, as training prepends them to the answer's audio."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("task tts needs a non-empty text input")
        return self.lm.backbone.tokenizer(text.strip(), add_special_tokens=False)["input_ids"]

    def stream(self, task: str, inp: AudioInput | str, force_text: bool = False,
               **kwargs) -> Iterator[TextDelta | AudioChunk | Finished]:
        """`stream()` of the task's prompt; kwargs go to `vita_audio.inference.stream.stream` (schedule, ...).
        `force_text=True` (task tts only): the answer's text chunks are the input text's ids, forced; the model
        writes only the audio (`forcing.py`)."""
        if force_text and task != "tts":
            raise ValueError(f"force_text needs task 'tts' (the answer's text is the input text), got task {task!r}")
        detok = None if task == "asr" else self.detokenizer
        ids, features = self.inputs(task, inp)
        if force_text:
            kwargs["force_text"] = self.answer_text(inp)
        return stream(self.lm, ids, detok, audio_features=features, **kwargs)

    def run(self, task: str, inp: AudioInput | str, **kwargs) -> Finished:
        return collect(self.stream(task, inp, **kwargs))


def _codec_from_dir(lm: VitaAudioLM, kind: str | None, codec_dir: str | Path | None, path) -> CodecParts:
    if codec_dir is None:
        raise ValueError("SpeechLM.from_pretrained needs the codec: give codec_dir=<the codec's directory> (and "
                         "audio=<its kind> when the checkpoint does not store one)")
    kind = kind or (stored_codec(getattr(lm, "generation_config", None)) or {}).get("kind")
    if kind is None:
        raise ValueError(f"{path} stores no audio codec kind: give audio='builtin' or audio='glm4voice'")
    return CodecParts.from_dir(kind, codec_dir)
