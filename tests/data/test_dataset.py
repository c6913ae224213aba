"""DDP sharding of packed rows: every rank yields the same number of batches, of the same sizes, for any number of
rows (fewer rows than ranks included), and together the ranks cover every row."""

from __future__ import annotations

from collections import Counter

import pytest

from vita_audio.data.dataset import PackedDataset, shard_rows


class FixedRows(PackedDataset):
    """A PackedDataset whose epoch plan is `n` given rows (no store needed to test the sharding)."""

    def __init__(self, n: int, batch_size: int, rank: int, world_size: int) -> None:
        super().__init__(None, batch_size, max_len=8, pad_id=0, rank=rank, world_size=world_size)
        self.n = n

    def all_rows(self, epoch: int) -> list[list[int]]:
        return [[i] for i in range(self.n)]


def batch_sizes(ds: PackedDataset) -> list[int]:
    rows = ds.rows(0)
    return [len(rows[j * ds.batch_size : (j + 1) * ds.batch_size]) for j in range(ds.num_batches(0))]


@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
@pytest.mark.parametrize("batch_size", [1, 2, 3])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 7, 8, 9, 13, 24, 25])
def test_every_rank_yields_the_same_batches(n, batch_size, world_size):
    ranks = [FixedRows(n, batch_size, r, world_size) for r in range(world_size)]
    sizes = [batch_sizes(ds) for ds in ranks]
    assert all(s == sizes[0] for s in sizes), sizes  # same count and same rows per batch on every rank
    assert all(len(ds) == len(ranks[0]) for ds in ranks)
    seen = Counter(r[0] for ds in ranks for r in ds.rows(0))
    assert set(seen) == set(range(n))  # every row is trained on
    if n:
        assert sum(seen.values()) == -(-n // world_size) * world_size  # ceil(n / W) rows per rank
        most = -(-world_size // n) if n < world_size else 2  # rows repeat only as much as needed
        assert max(seen.values()) <= most


def test_fewer_rows_than_ranks():
    # the reviewer's cases: 1 row on 8 ranks was [1, 1, 0, 0, 0, 0, 0, 0] batches, 3 rows [1]*6 + [0]*2
    assert [shard_rows([[0]], r, 8) for r in range(8)] == [[[0]]] * 8
    assert [shard_rows([[0], [1], [2]], r, 8) for r in range(8)] == [[[0]], [[1]], [[2]], [[0]], [[1]], [[2]],
                                                                     [[0]], [[1]]]
    assert [len(FixedRows(3, 4, r, 8)) for r in range(8)] == [1] * 8
    # not a multiple of W x batch_size: 10 rows, 4 ranks, batches of 2 -> 3 rows per rank -> batches of 2 and 1
    assert [batch_sizes(FixedRows(10, 2, r, 4)) for r in range(4)] == [[2, 1]] * 4


def test_single_rank_and_bad_rank():
    rows = [[3, 1], [2], [0]]
    assert shard_rows(rows, 0, 1) == rows and shard_rows([], 2, 4) == []
    with pytest.raises(ValueError, match="rank 4 outside"):
        shard_rows(rows, 4, 4)
