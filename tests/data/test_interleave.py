"""Interleaving (spec section 3): Boost and Balance schedules, properties on random inputs, edge cases."""

from __future__ import annotations

import random

import pytest

from vita_audio.data.interleave import chunk_sizes, interleave

BOA, EOA = -1, -2
BOOST, BALANCE = [1, 10, 4, 10], [1, 4, 3, 8, 4, 10]


def chunks(out):
    """[(text, audio), ...] of an interleaved sequence (text ids >= 0, audio ids >= 1000)."""
    res, text, i = [], [], 0
    while i < len(out):
        if out[i] == BOA:
            j = out.index(EOA, i)
            res.append((text, out[i + 1 : j]))
            text, i = [], j + 1
        else:
            text.append(out[i])
            i += 1
    assert not text, "text after the last audio chunk"
    return res


def test_chunk_sizes_of_the_variants():
    assert chunk_sizes(BOOST) == ([1, 4], [8, 8])
    assert chunk_sizes(BALANCE) == ([1, 3, 4], [2, 6, 8])
    with pytest.raises(ValueError):
        chunk_sizes([1, 10, 4])
    with pytest.raises(ValueError):
        chunk_sizes([1, 2])


def test_boost_exact():
    text, audio = list(range(10)), list(range(1000, 1030))
    got = chunks(interleave(text, audio, BOOST, BOA, EOA))
    # text cut 1,4,4,1 (4 chunks); audio cut 8,8,8,6 (4 chunks) -> 4 chunks, last takes the rest
    assert [len(t) for t, _ in got] == [1, 4, 4, 1]
    assert [len(a) for _, a in got] == [8, 8, 8, 6]


def test_balance_exact_and_last_chunk_takes_rest():
    text, audio = list(range(20)), list(range(1000, 1020))
    got = chunks(interleave(text, audio, BALANCE, BOA, EOA))
    # audio cut 2,6,8,4 (4 chunks) < text chunks 1,3,4,4,4,4 (6) -> 4 chunks; last text = 20-1-3-4 = 12
    assert [len(a) for _, a in got] == [2, 6, 8, 4]
    assert [len(t) for t, _ in got] == [1, 3, 4, 12]


@pytest.mark.parametrize("ratio", [BOOST, BALANCE, [2, 5], [1, 3, 1, 4, 2, 12]])
def test_properties_random(ratio):
    rng = random.Random(0)
    t_sizes, a_sizes = chunk_sizes(ratio)
    for _ in range(300):
        text = list(range(rng.randint(0, 40)))
        audio = list(range(1000, 1000 + rng.randint(0, 120)))
        out = interleave(text, audio, ratio, BOA, EOA)
        got = chunks(out)
        # order and content are preserved, markers come in pairs
        assert [x for t, _ in got for x in t] == text and [x for _, a in got for x in a] == audio
        assert out.count(BOA) == out.count(EOA) == len(got) >= 1
        # every chunk but the last follows the schedule (last value repeating)
        for i, (t, a) in enumerate(got[:-1]):
            assert len(t) == t_sizes[min(i, len(t_sizes) - 1)]
            assert len(a) == a_sizes[min(i, len(a_sizes) - 1)]
        # number of chunks = the smaller of the two greedy counts (at least one)
        def count(n, sizes):
            c = 0
            while n > 0:
                n -= sizes[min(c, len(sizes) - 1)]
                c += 1
            return c
        assert len(got) == max(1, min(count(len(text), t_sizes), count(len(audio), a_sizes)))


def test_edge_cases():
    # audio shorter than one chunk: one chunk with everything
    assert interleave([1, 2, 3], [1000, 1001], BOOST, BOA, EOA) == [1, 2, 3, BOA, 1000, 1001, EOA]
    # audio only
    assert interleave([], [1000] * 20, BOOST, BOA, EOA) == [BOA, *[1000] * 20, EOA]
    # text only (an empty audio span)
    assert interleave([5, 6], [], BOOST, BOA, EOA) == [5, 6, BOA, EOA]
    # interleaving off
    assert interleave([5, 6], [1000], None, BOA, EOA) == [5, 6, BOA, 1000, EOA]
    # first chunk: exactly one text token, so audio starts after the first LLM token
    out = interleave(list(range(9)), list(range(1000, 1100)), BOOST, BOA, EOA)
    assert out[:2] == [0, BOA]
