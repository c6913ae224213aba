"""English text -> phoneme ids with Debian's `espeak-ng` (offline), for the semantic codec's CTC targets.

    texts --one espeak-ng call per batch (`-q --ipa --sep=_ -v en-us`), each sentence its own paragraph,
            a sentinel paragraph after each--> IPA lines --split at sentinels, drop stress marks ˈ ˌ-->
            phoneme strings --INVENTORY index--> ids (0-based; the CTC blank is not among them)

Word boundaries are not phonemes (a pause is whatever the audio has). A sentence espeak-ng cannot phonemise
(empty text, no phonemes, a symbol outside INVENTORY such as a language switch "(fr)") is a counted skip: its
id list is None and `Phonemizer.skipped` names it with the reason. Results are cached per text.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field

#: The espeak-ng 1.51 en-us IPA phonemes (stress marks removed), in a fixed order: ids are positions here.
#: Found by phonemising the demo corpus and this project's documentation (about 6,000 words); r-coloured vowels
#: and syllabic consonants are single phonemes, as espeak-ng writes them.
INVENTORY: tuple[str, ...] = (
    # consonants
    "p", "b", "t", "d", "k", "ɡ", "f", "v", "θ", "ð", "s", "z", "ʃ", "ʒ", "h", "tʃ", "dʒ",
    "m", "n", "ŋ", "l", "ɹ", "w", "j", "ɾ", "ʔ", "x", "n̩", "əl",
    # vowels and diphthongs
    "i", "iː", "ɪ", "ᵻ", "ɛ", "æ", "ɐ", "ə", "ʌ", "ɑː", "ɔ", "ɔː", "oː", "ʊ", "uː", "ɜː", "ɚ",
    "eɪ", "aɪ", "ɔɪ", "aʊ", "oʊ", "iə", "aɪə", "aʊə",
    # r-coloured vowels
    "ɑːɹ", "ɔːɹ", "oːɹ", "ɛɹ", "ɪɹ", "ʊɹ", "aɪɚ", "aʊɚ",
)
PHONEME_ID = {p: i for i, p in enumerate(INVENTORY)}
STRESS = str.maketrans("", "", "ˈˌ")
SENTINEL = "zzqxj."  # a made-up word whose phonemes no real sentence gives as a whole line
INSTALL_HINT = "install it with `apt install espeak-ng` (Debian / Ubuntu)"


class EspeakMissingError(RuntimeError):
    """The espeak-ng binary is not on PATH."""


@dataclass
class Phonemizer:
    """`phonemizer(texts) -> [ids or None]` (None: skipped, reason in `skipped`).

    `voice`: the espeak-ng language (en-us matches INVENTORY); `batch`: sentences per espeak-ng call."""

    voice: str = "en-us"
    binary: str = "espeak-ng"
    batch: int = 256
    skipped: dict[str, str] = field(default_factory=dict)  # text -> why it has no phonemes
    _cache: dict[str, tuple[int, ...] | None] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if shutil.which(self.binary) is None:
            raise EspeakMissingError(f"the semantic codec needs the `{self.binary}` program for phoneme targets, and "
                                     f"it is not on PATH: {INSTALL_HINT}")
        self._sentinel = self._run([SENTINEL])[0]

    def __call__(self, texts: list[str]) -> list[list[int] | None]:
        todo = sorted({t for t in texts if t not in self._cache})
        for i in range(0, len(todo), self.batch):
            chunk = todo[i:i + self.batch]
            for text, ipa in zip(chunk, self._phonemise(chunk)):
                self._cache[text] = self._ids(text, ipa)
        return [None if self._cache[t] is None else list(self._cache[t]) for t in texts]

    def _ids(self, text: str, ipa: str | None) -> tuple[int, ...] | None:
        if ipa is None:
            self.skipped[text] = "empty text"
            return None
        symbols = [p.translate(STRESS) for word in ipa.split() for p in word.split("_")]
        symbols = [p for p in symbols if p]
        unknown = sorted({p for p in symbols if p not in PHONEME_ID})
        if unknown:
            self.skipped[text] = f"espeak-ng phonemes outside the inventory: {unknown}"
            return None
        if not symbols:
            self.skipped[text] = "espeak-ng gave no phonemes"
            return None
        return tuple(PHONEME_ID[p] for p in symbols)

    def _phonemise(self, texts: list[str]) -> list[str | None]:
        """One IPA string per text (None for an empty text); one espeak-ng call for all of them."""
        clean = [" ".join(t.split()) for t in texts]
        keep = [c for c in clean if c]
        lines = self._run(keep, sentinel=True) if keep else []
        if len(lines) != len(keep):  # the sentinels did not split cleanly: one call per text instead
            lines = [" ".join(self._run([c])) for c in keep]
        it = iter(lines)
        return [next(it) if c else None for c in clean]

    def _run(self, texts: list[str], sentinel: bool = False) -> list[str]:
        """espeak-ng on `texts`, each its own paragraph; with `sentinel`, the joined lines of each text."""
        sep = f"\n\n{SENTINEL}\n\n" if sentinel else "\n\n"
        proc = subprocess.run([self.binary, "-q", "--ipa", "--sep=_", "-v", self.voice], input=sep.join(texts) + sep,
                              capture_output=True, text=True, check=False)
        if proc.returncode:
            raise RuntimeError(f"{self.binary} -v {self.voice} failed ({proc.returncode}): {proc.stderr.strip()}")
        lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
        if not sentinel:
            return lines
        out, cur = [], []
        for ln in lines:
            if ln == self._sentinel:
                out.append(" ".join(cur))
                cur = []
            else:
                cur.append(ln)
        return out
