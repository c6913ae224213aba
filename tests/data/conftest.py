"""Fixtures of the data tests: the tiny text tokenizer, a deterministic audio tokenizer, small audio files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.fakes import EnergyTokenizer  # noqa: F401  (re-exported for the data tests)
from vita_audio.model.text_tokenizer import load_text_tokenizer
from vita_audio.model.vocab import extend_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tok_av():
    tok = load_text_tokenizer("tiny")
    av = extend_tokenizer(tok, 1024)
    return tok, av


def write_wav(path: Path, seconds: float = 0.4, freq: float = 220.0, sr: int = 16000) -> str:
    t = np.arange(int(seconds * sr)) / sr
    wav = 0.3 * np.sin(2 * np.pi * freq * t) * np.linspace(0.2, 1, t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav.astype(np.float32), sr, subtype="PCM_16")
    return str(path)


def write_jsonl(path: Path, rows: list) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return str(path)


def asr(wav: str, text: str) -> dict:
    return {"messages": [{"role": "user", "content": "Convert the speech to text.\n<|audio|>"},
                         {"role": "assistant", "content": text}], "audios": [wav]}


def tts(wav: str, text: str) -> dict:
    return {"messages": [{"role": "user", "content": f"Convert the text to speech.\n{text}"},
                         {"role": "assistant", "content": "<|audio|>"}], "audios": [wav]}


def sqa(q: str, a: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": "<|audio|>"},
                         {"role": "assistant", "content": f"{answer}\n<|audio|>"}], "audios": [q, a]}


@pytest.fixture()
def small_data(tmp_path):
    """A folder with 12 short wavs and ASR/TTS/SQA jsonl files referring to them (relative paths)."""
    wavs = [write_wav(tmp_path / "wavs" / f"{i}.wav", 0.2 + 0.05 * i, 150 + 40 * i) for i in range(12)]
    rel = [f"wavs/{i}.wav" for i in range(12)]
    words = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
    files = {
        "asr": write_jsonl(tmp_path / "asr.jsonl", [asr(rel[i], f"the number {words[i]}.") for i in range(6)]),
        "tts": write_jsonl(tmp_path / "tts.jsonl", [tts(rel[i], f"say {words[i]} now.") for i in range(6, 12)]),
        "sqa": write_jsonl(tmp_path / "sqa.jsonl", [sqa(rel[i], rel[i + 1], f"It is {words[i]}.") for i in range(0, 10, 2)]),
    }
    return tmp_path, wavs, files


@pytest.fixture()
def filled_cache(small_data):
    from vita_audio.data.cache import build_cache

    root, wavs, files = small_data
    build_cache(wavs, EnergyTokenizer(), root / "cache", "energy")
    return root, files
