"""Normalisers, WER / CER after a named normaliser and the spoken-QA containment rule.

The number cases are the ones a summing number rule gets wrong: years, digit strings, repeated digits, order."""

from __future__ import annotations

import pytest

from vita_audio.eval import metrics
from vita_audio.eval.metrics import cer, contains_answer, scores_by_language, wer
from vita_audio.eval.normalize import NORMALIZERS, get_normalizer


@pytest.mark.parametrize(
    "text, expected",
    [
        ("nineteen eighty four", "1984"),  # a year, not 19 + 80 + 4
        ("nineteen forty five", "1945"),
        ("In nineteen ninety nine.", "in 1999"),
        ("call nine one one", "call 911"),  # a digit string, not 9 + 1 + 1
        ("call one one nine", "call 119"),
        ("one two three", "123"),
        ("three two one", "321"),  # order kept
        ("two two", "22"),  # repeated digits, not 4
        ("one oh one", "101"),
        ("one thousand nine hundred eighty four", "1984"),
        ("Two hundred and one dogs, 50% of them", "201 dogs 50% of them"),
        ("[noise] Uh, it's thirty-five percent (roughly).", "it is 35%"),
        ("It costs twenty dollars.", "it costs $20"),
        ("I colour the centre.", "i color the center"),
    ],
)
def test_whisper_en_is_whispers_normaliser(text, expected):
    assert get_normalizer("whisper_en")(text) == expected


def test_whisper_en_word_error_rates_see_digits_and_order():
    assert wer(["call nine one one"], ["call one one nine"], "whisper_en") > 0
    assert wer(["one two three"], ["three two one"], "whisper_en") > 0
    assert wer(["two two"], ["four"], "whisper_en") > 0
    assert wer(["nineteen eighty four"], ["1984"], "whisper_en") == 0.0
    assert wer(["It is thirty-five percent."], ["it's 35%"], "whisper_en") == 0.0


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("none", "  Hello,   World! ", "Hello, World!"),
        ("seed_tts", 'Hello, World!  It\u2019s "ok".', "hello world it's ok"),
        ("seed_tts", "'quoted' rock-and-roll\u2019s", "quoted rock and roll's"),  # apostrophes inside words only
        ("seed_tts", "Thirty five, 35.", "thirty five 35"),  # no number rule: words stay words
        ("seed_tts", "今天，天气很好。", "今 天 天 气 很 好"),  # Chinese split into characters
        ("seed_tts", "Hello世界!", "hello 世 界"),
        ("seed_tts", "", ""),
    ],
)
def test_none_and_seed_tts(name, text, expected):
    assert get_normalizer(name)(text) == expected


def test_unknown_normalizer_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown normalizer 'nfc'.*none, seed_tts, whisper_en"):
        get_normalizer("nfc")
    assert set(NORMALIZERS) == {"none", "seed_tts", "whisper_en"}
    with pytest.raises(ValueError, match="unknown normalizer 'nfc'"):
        wer(["a"], ["a"], "nfc")
    assert not hasattr(metrics, "normalize_en")  # one English normaliser family, in normalize.py


def test_cer_uses_jiwer_and_the_named_normaliser():
    assert cer(["今天天气很好"], ["今天天气很好。"], "seed_tts") == 0.0
    assert cer(["今天天气很好"], ["今天天气很好。"], "none") == pytest.approx(1 / 6)  # "。" counts
    assert cer(["今天天气很好"], ["今天天汽很好"], "seed_tts") == pytest.approx(1 / 6)
    assert cer(["abcd"], ["abed"]) == pytest.approx(0.25)
    assert cer(["two two"], ["22"], "whisper_en") == 0.0 and cer(["two two"], ["four"], "whisper_en") == 1.0


def test_mixed_language_rows_are_scored_by_their_language():
    refs, hyps = ["hello world", "今天天气很好"], ["hello word", "今天天汽很好"]
    assert scores_by_language(refs, hyps, ["en", "zh"], "seed_tts") == pytest.approx({"wer": 0.5, "cer": 1 / 6})
    assert scores_by_language(refs[:1], hyps[:1], ["en"], "seed_tts") == {"wer": 0.5}


@pytest.mark.parametrize(
    "prediction, aliases, normalizer, expected",
    [
        ("Seven times five is thirty five.", ["35"], "whisper_en", True),
        ("Seven times five is thirty five.", ["35"], "seed_tts", False),  # seed_tts has no number rule
        ("It is 35.", ["thirty five"], "whisper_en", True),
        ("It is 35.", ["35"], "none", False),  # "none" keeps the full stop: "35." is not "35"
        ("It is 35.", ["35"], "seed_tts", True),
        ("The war ended in nineteen forty five.", ["1945"], "whisper_en", True),
        ("It ended in nineteen eighty four.", ["1945"], "whisper_en", False),
        ("two two", ["four"], "whisper_en", False),  # repeated digits are not a sum
        ("dial nine one one", ["911"], "whisper_en", True),
        ("dial one one nine", ["911"], "whisper_en", False),
        ("The capital of Greece is Athens!", ["athens"], "seed_tts", True),
        ("The capital of Greece is Sparta.", ["athens", "Athína"], "whisper_en", False),
        ("", ["athens"], "whisper_en", False),
    ],
)
def test_containment_follows_the_normaliser(prediction, aliases, normalizer, expected):
    assert contains_answer(prediction, aliases, normalizer) is expected
