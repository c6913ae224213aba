"""Seed-TTS-eval test sets (test-en / test-zh), from their meta list::

    <dir>/meta.lst       one line per utterance: "<utt>|<prompt text>|<prompt wav>|<target text>"
    <dir>/wavs/<utt>.wav  the original recording of the target text, when present (the judge's baseline)

Only the target text is spoken here (no voice cloning: the built-in codec has one voice); the prompt wav is kept in
`extra` for speaker-similarity tools.
"""

from __future__ import annotations

from pathlib import Path

from vita_audio.eval.adapters.sample import EvalSample, check_layout

LAYOUT = "a meta.lst of '<utt>|<prompt text>|<prompt wav>|<target text>' lines"


class SeedTTS:
    def __init__(self, meta: str | Path, language: str | None = None, limit: int | None = None) -> None:
        self.meta, self.limit = Path(meta).expanduser(), limit
        if self.meta.is_dir():
            self.meta = self.meta / "meta.lst"
        self.language = language or ("zh" if "zh" in self.meta.parent.name else "en")

    def samples(self) -> list[EvalSample]:
        check_layout(self.meta, "Seed-TTS-eval", LAYOUT)
        base = self.meta.parent
        out: list[EvalSample] = []
        for n, line in enumerate(self.meta.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split("|")
            if len(parts) != 4:
                raise ValueError(f"{self.meta}:{n}: expected 4 '|'-separated fields ({LAYOUT}), got {len(parts)}")
            utt, prompt_text, prompt_wav, target = (p.strip() for p in parts)
            ref = base / "wavs" / f"{utt}.wav"
            out.append(EvalSample(id=utt, text=target, ref_audio=ref if ref.is_file() else None,
                                  language=self.language,
                                  extra={"prompt_text": prompt_text, "prompt_wav": str(base / prompt_wav)}))
        return out[: self.limit] if self.limit else out
