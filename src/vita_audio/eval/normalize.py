"""Named text normalisations for scoring (method spec, section 7). Every reported number states which one it used.

    none        Unicode NFKC and whitespace collapsed, nothing else
    seed_tts    the Seed-TTS-eval protocol: punctuation stripped except apostrophes inside words, English
                lower-cased; Chinese is scored per character (see `metrics.cer`)
    whisper_en  an English normaliser in the spirit of Whisper's: seed_tts, plus bracketed and parenthesised
                asides and hesitations ("uh", "um", ...) removed, spelled-out numbers written as digits
                ("thirty five" -> "35", "two hundred and one" -> "201"), "%" and "percent" unified

`get_normalizer(name)` returns the function; an unknown name is an error listing the known ones.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

_PUNCT = re.compile(r"[^\w\s']|_")
_LONE_APOS = re.compile(r"(?<!\w)'|'(?!\w)")
_BRACKETS = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>")
_HESITATIONS = {"uh", "um", "umm", "uhm", "hmm", "mm", "mhm", "er", "erm", "ah"}

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORDS = set(_UNITS) | set(_TENS) | set(_SCALES)


def normalize_none(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def normalize_seed_tts(text: str) -> str:
    """'Hello, World!  It's "ok".' -> "hello world it's ok"."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    text = _PUNCT.sub(" ", text)
    text = _LONE_APOS.sub(" ", text)
    return " ".join(text.split())


def _parse_number(words: list[str]) -> int | None:
    """Spelled-out English number -> int ('two hundred and one' -> 201); None when it is not one."""
    total, current, seen = 0, 0, False
    for w in words:
        if w == "and" and seen:
            continue
        if w in _UNITS:
            current += _UNITS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w == "hundred":
            current = max(current, 1) * 100
        elif w in _SCALES:
            total += max(current, 1) * _SCALES[w]
            current = 0
        else:
            return None
        seen = True
    return total + current if seen else None


def words_to_digits(text: str) -> str:
    """Replace each maximal run of number words by its digits: 'it is thirty five' -> 'it is 35'."""
    tokens, out, i = text.split(), [], 0
    while i < len(tokens):
        if tokens[i] in _NUMBER_WORDS:
            j = i
            while j < len(tokens) and (tokens[j] in _NUMBER_WORDS or (tokens[j] == "and" and j + 1 < len(tokens)
                                                                       and tokens[j + 1] in _NUMBER_WORDS)):
                j += 1
            value = _parse_number(tokens[i:j])
            out.append(str(value) if value is not None else " ".join(tokens[i:j]))
            i = j
        else:
            out.append(tokens[i])
            i += 1
    return " ".join(out)


def normalize_whisper_en(text: str) -> str:
    """'[noise] Uh, it's thirty-five percent (roughly).' -> "it's 35 percent"."""
    text = _BRACKETS.sub(" ", unicodedata.normalize("NFKC", text))
    text = text.replace("%", " percent ").replace("-", " ")
    text = normalize_seed_tts(text)
    text = " ".join(w for w in text.split() if w not in _HESITATIONS)
    return words_to_digits(text)


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "none": normalize_none,
    "seed_tts": normalize_seed_tts,
    "whisper_en": normalize_whisper_en,
}


def get_normalizer(name: str) -> Callable[[str], str]:
    if name not in NORMALIZERS:
        raise ValueError(f"unknown normalizer {name!r}; choose one of {', '.join(NORMALIZERS)}")
    return NORMALIZERS[name]
