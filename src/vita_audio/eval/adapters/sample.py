"""One evaluation sample, whatever set it came from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class EvalSample:
    id: str
    text: str  # ASR: the reference transcript; TTS: the text to speak; SQA: the reference answer (may be "")
    audio: Path | None = None  # ASR / SQA: the input speech
    answers: tuple[str, ...] = ()  # SQA: accepted answer aliases
    ref_audio: Path | None = None  # TTS: original recording of `text` (the judge's baseline), when the set has one
    language: str = "en"  # "zh" rows are scored per character (CER), every other language per word (WER)
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def check_layout(path: Path, what: str, expected: str) -> None:
    """A clear error when a dataset path is missing or does not have the documented layout."""
    if not path.exists():
        raise FileNotFoundError(f"{what}: {path} does not exist (expected {expected}); nothing is downloaded, "
                                "point the dataset path at a local copy")


def text_language(text: str) -> str:
    """The language of a row that does not state one: "zh" when its text holds Han characters, else "en"."""
    return "zh" if _HAN.search(text) else "en"
