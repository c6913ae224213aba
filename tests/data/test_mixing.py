"""Mixing: ratio (fractions, repeats) and num caps; deterministic per (seed, epoch)."""

from __future__ import annotations

from collections import Counter

import pytest

from vita_audio.data.mixing import Source, as_sources, epoch_order


def test_ratio_and_num():
    srcs = [Source("a", ratio=2.0), Source("b", ratio=0.05), Source("c", ratio=1.0, num=7), Source("d", ratio=1.5)]
    order = epoch_order([10, 100, 20, 10], srcs, seed=0, epoch=0)
    per = Counter(s for s, _ in order)
    assert per == {0: 20, 1: 5, 2: 7, 3: 15}
    assert Counter(i for s, i in order if s == 0) == {i: 2 for i in range(10)}  # every record twice
    assert len({i for s, i in order if s == 1}) == 5  # a 5% subset, no repeats
    assert all(0 <= i < 20 for s, i in order if s == 2)


def test_deterministic_and_fresh_per_epoch():
    srcs = [Source("a", ratio=0.3), Source("b")]
    e0 = epoch_order([100, 50], srcs, seed=1, epoch=0)
    assert e0 == epoch_order([100, 50], srcs, seed=1, epoch=0)
    assert e0 != epoch_order([100, 50], srcs, seed=1, epoch=1)
    assert epoch_order([100, 50], srcs, 1, 0, shuffle=False)[-50:] == [(1, i) for i in range(50)]


def test_as_sources_and_validation():
    assert as_sources(["x.jsonl", {"path": "y", "ratio": 2}]) == [Source("x.jsonl"), Source("y", 2.0)]
    with pytest.raises(ValueError):
        Source("x", ratio=-1)
