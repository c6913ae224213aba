"""One evaluation sample, whatever set it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class EvalSample:
    id: str
    text: str  # ASR: the reference transcript; TTS: the text to speak; SQA: the reference answer (may be "")
    audio: Path | None = None  # ASR / SQA: the input speech
    answers: tuple[str, ...] = ()  # SQA: accepted answer aliases
    ref_audio: Path | None = None  # TTS: original recording of `text` (the judge's baseline), when the set has one
    language: str = "en"
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def check_layout(path: Path, what: str, expected: str) -> None:
    """A clear error when a dataset path is missing or does not have the documented layout."""
    if not path.exists():
        raise FileNotFoundError(f"{what}: {path} does not exist (expected {expected}); nothing is downloaded, "
                                "point the dataset path at a local copy")
