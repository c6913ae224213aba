"""Packing invariants, the batch contract, DDP shards, determinism, mid-epoch resume, workers, skips."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from conftest import asr, write_jsonl
from vita_audio.data.datamodule import VitaDataModule
from vita_audio.data.packing import collate_rows, cu_seqlens, padding_fraction, plan_rows
from vita_audio.data.records import DataError
from vita_audio.model.loss import IGNORE_INDEX
from vita_audio.model.masking import packed_causal_mask


def test_plan_rows_invariants():
    rng = random.Random(0)
    for max_len in (64, 256):
        lengths = [rng.randint(1, max_len) for _ in range(500)]
        order = list(range(500))
        rng.shuffle(order)
        rows = plan_rows(lengths, order, max_len, open_rows=16)
        assert sorted(i for r in rows for i in r) == list(range(500))  # every sample once, never split
        assert all(sum(lengths[i] for i in r) <= max_len for r in rows)
        assert rows == plan_rows(lengths, order, max_len, open_rows=16)
    small = [rng.randint(20, 200) for _ in range(2000)]
    assert padding_fraction(small, plan_rows(small, range(2000), 2048), 2048) < 0.02
    with pytest.raises(ValueError, match="max_len"):
        plan_rows([10], [0], 5)


def test_collate_positions_mask_and_cu_seqlens():
    rows = [[([1, 2, 3], [-100, 2, 3]), ([4, 5], [4, 5])], [([6], [6])]]
    b = collate_rows(rows, 8, pad_id=0)
    assert b["position_ids"][0].tolist() == [0, 1, 2, 0, 1, 0, 0, 0]
    assert b["sample_ids"][0].tolist() == [0, 0, 0, 1, 1, -1, -1, -1]
    assert b["labels"][1].tolist() == [6] + [IGNORE_INDEX] * 7
    mask = packed_causal_mask(b["sample_ids"])[0, 0]
    assert not mask[3, :3].any() and mask[4, 3] and not mask[3, 4]  # no attention across samples, causal inside
    assert cu_seqlens(b["sample_ids"]).tolist() == [0, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]


def make_dm(tok_av, root, files, **kw):
    tok, av = tok_av
    args = dict(train_sources=[{"path": files["asr"]}, {"path": files["tts"]}, {"path": files["sqa"]}],
                interleave_ratio=[1, 10, 4, 10], max_len=160, batch_size=2, cache_dir=str(root / "cache"),
                cache_name="energy", seed=3, open_rows=4)
    args.update(kw)
    dm = VitaDataModule(tok, av, **args)
    dm.setup("fit")
    return dm


def test_batch_contract_and_every_supervised_token_once(tok_av, filled_cache):
    root, files = filled_cache
    dm = make_dm(tok_av, root, files)
    batches = list(dm.train_dataloader())
    assert len(batches) == len(dm.train_dataloader())
    store = dm.train_set.store
    want = Counter()
    for i in range(len(store.records)):
        ids, labels = store.build(i)
        want[tuple(labels)] += 1
    got = Counter()
    for b in batches:
        assert set(b) == {"input_ids", "labels", "position_ids", "sample_ids"}
        assert all(v.dtype == torch.long and v.shape[1] == 160 for v in b.values())
        for r in range(b["input_ids"].shape[0]):
            sid, pos = b["sample_ids"][r], b["position_ids"][r]
            assert (b["labels"][r][sid < 0] == IGNORE_INDEX).all()
            for s in sid.unique().tolist():
                if s < 0:
                    continue
                sel = sid == s
                assert pos[sel].tolist() == list(range(int(sel.sum())))  # contiguous, restarting at 0
                got[tuple(b["labels"][r][sel].tolist())] += 1
    assert got == want  # every sample, hence every supervised token, exactly once per epoch
    assert len(store.records) == 17 and dm.skip_counts() == {}


def test_deterministic_and_epochs_differ(tok_av, filled_cache):
    root, files = filled_cache
    a = [b["input_ids"] for b in make_dm(tok_av, root, files).train_dataloader()]
    dl = make_dm(tok_av, root, files).train_dataloader()
    b = [x["input_ids"] for x in dl]
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)
    c = [x["input_ids"] for x in dl]  # second pass = epoch 1: another order
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_ddp_ranks_disjoint_and_equal(tok_av, filled_cache):
    root, files = filled_cache
    dm = make_dm(tok_av, root, files)
    all_rows = dm.train_set.all_rows(0)
    ranks = []
    for r in range(3):
        ds = dm.train_set
        ds.rank, ds.world_size, ds._plan = r, 3, None
        ranks.append(ds.rows(0))
    assert len({len(x) for x in ranks}) == 1
    flat = [tuple(row) for x in ranks for row in x]
    assert set(flat) == {tuple(r) for r in all_rows}
    assert len(flat) - len(all_rows) < 3  # only the wrap-around rows repeat


def test_resume_mid_epoch(tok_av, filled_cache):
    root, files = filled_cache
    full = [b["input_ids"] for b in make_dm(tok_av, root, files, batch_size=1).train_dataloader()]
    dl = make_dm(tok_av, root, files, batch_size=1).train_dataloader()
    it = iter(dl)
    head = [next(it)["input_ids"] for _ in range(2)]
    state = dl.state_dict()
    assert state["batches"] == 2 and state["epoch"] == 0
    dl2 = make_dm(tok_av, root, files, batch_size=1).train_dataloader()
    dl2.load_state_dict(state)
    tail = [b["input_ids"] for b in dl2]
    assert len(full) > 3 and all(torch.equal(x, y) for x, y in zip(head + tail, full)) and len(head + tail) == len(full)


def test_workers_give_the_same_batches(tok_av, filled_cache):
    root, files = filled_cache
    ref = [b["input_ids"] for b in make_dm(tok_av, root, files, batch_size=1).train_dataloader()]
    dl = make_dm(tok_av, root, files, batch_size=1, num_workers=2).train_dataloader()
    dl.load_state_dict({"epoch": 0, "batches": 1, "seed": 3})
    got = [b["input_ids"] for b in dl]
    assert len(got) == len(ref) - 1 and all(torch.equal(x, y) for x, y in zip(got, ref[1:]))


def test_too_long_and_missing_cache(tok_av, filled_cache):
    root, files = filled_cache
    with pytest.raises(DataError, match=r"asr.jsonl:1: sample has \d+ tokens, more than max_len 20"):
        make_dm(tok_av, root, files, max_len=20)
    dm = make_dm(tok_av, root, files, max_len=40, on_error="skip")
    counts = dm.skip_counts()
    assert counts["too_long"] > 0 and sum(counts.values()) + len(dm.train_set.store.records) == 17
    extra = write_jsonl(root / "x.jsonl", [asr("wavs/0.wav", "hi"), {"messages": [{"role": "bot", "content": "x"}]}])
    (root / "wavs" / "new.wav").write_bytes((root / "wavs" / "0.wav").read_bytes()[:-200])
    write_jsonl(root / "y.jsonl", [asr("wavs/new.wav", "changed")])
    with pytest.raises(DataError, match="no cached codes"):
        make_dm(tok_av, root, {"asr": str(root / "y.jsonl"), "tts": extra, "sqa": extra})
    dm = make_dm(tok_av, root, {"asr": str(root / "y.jsonl"), "tts": extra, "sqa": extra}, on_error="skip")
    assert dm.skip_counts() == {"cache_missing": 1, "unknown_role": 2}


def test_rank_and_epoch_come_from_the_trainer(tok_av, filled_cache):
    from types import SimpleNamespace

    root, files = filled_cache
    tok, av = tok_av
    shards = []
    for rank in range(2):
        dm = VitaDataModule(tok, av, [{"path": files["asr"]}, {"path": files["tts"]}], max_len=100, batch_size=1,
                            cache_dir=str(root / "cache"), cache_name="energy")
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2, current_epoch=1, training=True)
        dm.setup("fit")
        dl = dm.train_dataloader()
        shards.append([b["input_ids"] for b in dl])
        assert dl.state_dict()["epoch"] == 1 and dm.train_set.epoch == 1
    assert len(shards[0]) == len(shards[1]) > 0
    assert not any(torch.equal(a, b) for a in shards[0] for b in shards[1])  # 12 samples: no wrap-around here
