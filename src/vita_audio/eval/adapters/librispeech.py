"""LibriSpeech, from its own directory layout::

    <root>/                          e.g. LibriSpeech/test-clean
      <speaker>/<chapter>/
        <speaker>-<chapter>.trans.txt   one line per utterance: "<utt id> <TRANSCRIPT IN CAPITALS>"
        <utt id>.flac                   (or .wav)
"""

from __future__ import annotations

from pathlib import Path

from vita_audio.eval.adapters.sample import EvalSample, check_layout

LAYOUT = "<root>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt next to <utt>.flac"


class LibriSpeech:
    def __init__(self, root: str | Path, limit: int | None = None) -> None:
        self.root, self.limit = Path(root).expanduser(), limit

    def samples(self) -> list[EvalSample]:
        check_layout(self.root, "LibriSpeech", LAYOUT)
        trans = sorted(self.root.rglob("*.trans.txt"))
        if not trans:
            raise FileNotFoundError(f"LibriSpeech: no *.trans.txt under {self.root} (expected {LAYOUT})")
        out: list[EvalSample] = []
        for t in trans:
            for n, line in enumerate(t.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                utt, _, text = line.strip().partition(" ")
                if not text:
                    raise ValueError(f"{t}:{n}: expected '<utt id> <transcript>', got {line!r}")
                audio = next((t.parent / f"{utt}{ext}" for ext in (".flac", ".wav") if (t.parent / f"{utt}{ext}")
                              .is_file()), t.parent / f"{utt}.flac")
                out.append(EvalSample(id=utt, text=text, audio=audio))
        return out[: self.limit] if self.limit else out
