"""Named text normalisations for scoring (method spec, section 7). Every reported number states which one it used.

    none        Unicode NFKC and whitespace collapsed, nothing else
    seed_tts    the Seed-TTS-eval protocol: punctuation stripped except apostrophes inside words, English
                lower-cased, Chinese split into characters (each Han character is one token)
    whisper_en  Whisper's own English normaliser (`EnglishTextNormalizer` of transformers, with the British ->
                American spelling map that the `whisper-normalizer` package ships): lower-cased, bracketed and
                parenthesised asides and hesitations removed, contractions and spellings standardised, numbers
                written as digits the way Whisper reads them ("nineteen eighty four" -> "1984", "call nine one one"
                -> "call 911", "two hundred and one" -> "201"), currency and percent attached ("twenty dollars" ->
                "$20", "thirty five percent" -> "35%")

`get_normalizer(name)` returns the function; an unknown name is an error listing the known ones. Nothing is
downloaded: the spelling map is package data of `whisper-normalizer`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from functools import cache

_PUNCT = re.compile(r"[^\w\s']|_")
_LONE_APOS = re.compile(r"(?<!\w)'|'(?!\w)")
_HAN = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff])")  # CJK unified ideographs, ext. A, compatibility


def normalize_none(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def normalize_seed_tts(text: str) -> str:
    """'Hello, World!  It's "ok".' -> "hello world it's ok"; '今天，天气好。' -> '今 天 天 气 好'."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    text = _PUNCT.sub(" ", text)
    text = _LONE_APOS.sub(" ", text)
    text = _HAN.sub(r" \1 ", text)
    return " ".join(text.split())


@cache
def _whisper_english() -> Callable[[str], str]:
    """transformers' copy of Whisper's `EnglishTextNormalizer`, built once with the packaged spelling map."""
    from importlib.resources import files

    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    try:
        mapping = files("whisper_normalizer").joinpath("normalizers", "english.json").read_text(encoding="utf-8")
    except ModuleNotFoundError as err:
        raise ImportError("normalizer 'whisper_en' needs the English spelling map of the `whisper-normalizer` "
                          "package: pip install whisper-normalizer==0.1.15") from err
    return EnglishTextNormalizer(json.loads(mapping))


def normalize_whisper_en(text: str) -> str:
    """"[noise] Uh, it's thirty-five percent (roughly)." -> "it is 35%"."""
    return _whisper_english()(text)


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "none": normalize_none,
    "seed_tts": normalize_seed_tts,
    "whisper_en": normalize_whisper_en,
}


def get_normalizer(name: str) -> Callable[[str], str]:
    if name not in NORMALIZERS:
        raise ValueError(f"unknown normalizer {name!r}; choose one of {', '.join(NORMALIZERS)}")
    return NORMALIZERS[name]
