"""Normalisers, CER and the spoken-QA containment rule."""

from __future__ import annotations

import pytest

from vita_audio.eval.metrics import cer, contains_answer, wer
from vita_audio.eval.normalize import NORMALIZERS, get_normalizer, words_to_digits


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("none", "  Hello,   World! ", "Hello, World!"),
        ("seed_tts", 'Hello, World!  It\u2019s "ok".', "hello world it's ok"),
        ("whisper_en", "[noise] Uh, it's thirty-five percent (roughly).", "it's 35 percent"),
        ("whisper_en", "Two hundred and one dogs, 50% of them", "201 dogs 50 percent of them"),
        ("whisper_en", "one thousand nine hundred eighty four", "1984"),
    ],
)
def test_normalizers(name, text, expected):
    assert get_normalizer(name)(text) == expected


def test_unknown_normalizer_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown normalizer 'nfc'.*none, seed_tts, whisper_en"):
        get_normalizer("nfc")
    assert set(NORMALIZERS) == {"none", "seed_tts", "whisper_en"}


def test_words_to_digits_leaves_other_words():
    assert words_to_digits("seven times five is thirty five") == "7 times 5 is 35"
    assert words_to_digits("and then") == "and then"


def test_cer_counts_characters():
    assert cer(["今天天气很好"], ["今天天气很好。"]) == 0.0
    assert cer(["今天天气很好"], ["今天天汽很好"]) == pytest.approx(1 / 6)
    assert cer(["abcd"], ["abed"]) == pytest.approx(0.25)


def test_containment():
    assert contains_answer("Seven times five is thirty five.", ["thirty five", "35"])
    assert contains_answer("It is 35.", ["thirty five"])
    assert contains_answer("The capital of Greece is Athens!", ["athens"])
    assert not contains_answer("The capital of Greece is Sparta.", ["athens", "Athína"])
    assert not contains_answer("", ["athens"])
    assert wer(["a b"], ["a b"]) == 0.0
