"""The synthetic data module under DDP: each rank reads its own share of one stream, and resumes inside it."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from vita_audio.data.synthetic import SyntheticDataModule


def _module(tiny_backbone) -> SyntheticDataModule:
    return SyntheticDataModule(tiny_backbone.tokenizer, tiny_backbone.audio_vocab, batch_size=2, max_len=64)


def _batches(dm: SyntheticDataModule, n: int, rank: int | None = None, world: int = 1) -> list[torch.Tensor]:
    dm.trainer = None if rank is None else SimpleNamespace(global_rank=rank, world_size=world)
    it = iter(dm.train_dataloader())
    return [next(it)["input_ids"] for _ in range(n)]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.equal(a, b))


def test_ranks_read_disjoint_shares_of_the_single_process_stream(tiny_backbone):
    one = _batches(_module(tiny_backbone), 6)
    r0 = _batches(_module(tiny_backbone), 3, rank=0, world=2)
    r1 = _batches(_module(tiny_backbone), 3, rank=1, world=2)
    assert not _same(r0[0], r1[0])  # the two ranks do not train on the same batch
    for i in range(3):  # together: global batches 0..5, rank r holding r, r + 2, r + 4
        assert _same(r0[i], one[2 * i]) and _same(r1[i], one[2 * i + 1])


def test_a_resumed_rank_continues_its_own_share(tiny_backbone):
    full = _batches(_module(tiny_backbone), 4, rank=1, world=2)
    dm = _module(tiny_backbone)
    dm.load_state_dict({"train_batches_consumed": 2})  # this rank had consumed two batches
    resumed = _batches(dm, 2, rank=1, world=2)
    assert _same(resumed[0], full[2]) and _same(resumed[1], full[3])
