"""Speech synthesis for the corpus: hibari-tts (the neural voice in its wheel) and espeak-ng (many voices).

hibari is the corpus's "assistant voice": every TTS target and every spoken answer uses it, so the model learns
one consistent voice to speak with. espeak-ng voices (variants, speeds, pitches) add speaker variety on the
input side (ASR inputs, spoken questions). Output: 16 kHz mono float32, written as 16-bit WAV.
"""

from __future__ import annotations

import os
import random
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from vita_audio.audio.io import read_audio, resample, write_audio

ESPEAK_LANGS = ["en-us", "en-us", "en", "en-gb-x-rp", "en-029", "en-gb-scotland"]
ESPEAK_VARIANTS = ["f1", "f2", "f3", "f4", "m1", "m2", "m3", "m4", "m7"]


@dataclass(frozen=True)
class Voice:
    engine: str  # "hibari" | "espeak"
    name: str = "default"  # espeak: "<lang>+<variant>"
    speed: int = 160  # espeak words per minute
    pitch: int = 50  # espeak pitch 0..99

    @property
    def tag(self) -> str:
        return "hibari" if self.engine == "hibari" else f"espeak-{self.name.replace('+', '-')}-s{self.speed}-p{self.pitch}"


HIBARI = Voice("hibari")


def random_espeak_voice(rng: random.Random) -> Voice:
    return Voice("espeak", f"{rng.choice(ESPEAK_LANGS)}+{rng.choice(ESPEAK_VARIANTS)}", rng.randint(135, 185),
                 rng.randint(30, 70))


_HIBARI = None


def _hibari():
    global _HIBARI
    if _HIBARI is None:
        from hibari import Hibari

        _HIBARI = Hibari(threads=1)
    return _HIBARI


def synthesize(text: str, voice: Voice, seed: int, sample_rate: int = 16000) -> torch.Tensor:
    """Mono float32 waveform (S,) at `sample_rate`."""
    if voice.engine == "hibari":
        tts = _hibari()
        wav = torch.from_numpy(np.asarray(tts(text, seed=seed), dtype=np.float32))
        return resample(wav, tts.sample_rate, sample_rate)
    if voice.engine == "espeak":
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "x.wav")
            cmd = ["espeak-ng", "-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch), "-w", out, text]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0 or not os.path.isfile(out):
                raise RuntimeError(f"espeak-ng failed ({' '.join(cmd)}): {res.stderr.strip()}")
            wav, _ = read_audio(out, sample_rate)
            return wav
    raise ValueError(f"unknown synthesis engine {voice.engine!r}: expected 'hibari' or 'espeak'")


def render(job: tuple[str, str, Voice, int, int]) -> float:
    """Worker: synthesise `text` into `path` unless it is already there; returns the duration in seconds."""
    path, text, voice, seed, sample_rate = job
    p = Path(path)
    if p.is_file():
        return sf.info(str(p)).duration
    torch.set_num_threads(1)
    wav = synthesize(text, voice, seed, sample_rate)
    tmp = p.with_name(f".{p.stem}.{os.getpid()}.tmp.wav")
    write_audio(tmp, wav, sample_rate)
    os.replace(tmp, p)
    return wav.numel() / sample_rate
