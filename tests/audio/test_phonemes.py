"""The espeak-ng phonemiser: real espeak-ng calls, counted skips for what it cannot phonemise, a clear error when the
program is missing."""

from __future__ import annotations

import shutil

import pytest

from vita_audio.audio.builtin.phonemes import INVENTORY, EspeakMissingError, Phonemizer

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt install espeak-ng)")


def test_two_sentences_in_one_call_give_their_own_phonemes():
    p = Phonemizer()
    a, b = "Paris is the capital of France.", "Turn on the lights, in the garage!"
    ids = p([a, b, a])
    assert ids[0] == ids[2] and ids[0] != ids[1]
    assert all(0 <= i < len(INVENTORY) for seq in ids for i in seq)
    # the batch splits where it should: each sentence alone gives the same ids (the comma clause stays in b)
    assert Phonemizer()([b]) == [ids[1]] and Phonemizer()([a]) == [ids[0]]
    assert [INVENTORY[i] for i in ids[0][:5]] == ["p", "æ", "ɹ", "ɪ", "s"]
    assert not p.skipped


def test_unphonemisable_sentences_are_counted_skips():
    p = Phonemizer()
    ids = p(["", "...", "Hello world."])
    assert ids[0] is None and ids[1] is None and ids[2]
    assert p.skipped == {"": "empty text", "...": "espeak-ng gave no phonemes"}


def test_phonemes_outside_the_inventory_are_a_counted_skip():
    p = Phonemizer(voice="fr")  # French phonemes are outside the en-us inventory
    assert p(["Bonjour à tous, le croissant est délicieux."]) == [None]
    assert "outside the inventory" in next(iter(p.skipped.values()))


def test_a_missing_espeak_names_the_install():
    with pytest.raises(EspeakMissingError, match="apt install espeak-ng"):
        Phonemizer(binary="espeak-ng-not-installed")
