"""Samples built once per node: local rank 0 writes a memory-mapped samples file, other ranks and later runs map it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from test_packing import make_dm
from vita_audio.data import dataset as dataset_mod
from vita_audio.data.dataset import SampleStore, SamplesFileError


@pytest.fixture()
def builds(monkeypatch):
    """Counts SampleStore.load calls (each builds every sample of a source list)."""
    calls = []
    real = SampleStore.load

    def counting(self, *args, **kwargs):
        calls.append(kwargs.get("save_to"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SampleStore, "load", counting)
    return calls


def epoch_batches(dm) -> list[dict[str, torch.Tensor]]:
    return list(dm.train_dataloader())


def assert_same(a, b) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), k


def samples_files(root):
    return sorted((root / "cache" / "samples").glob("*.samples"))


def test_second_setup_maps_the_file_and_batches_match(tok_av, filled_cache, builds):
    root, files = filled_cache
    fresh = make_dm(tok_av, root, files, map_samples=False)  # every sample built here, records kept
    assert len(builds) == 1 and builds[0] is None and not samples_files(root)

    first = make_dm(tok_av, root, files)  # builds and writes the file
    assert len(builds) == 2 and first.sample_builds == 1 and first.sample_maps == 0
    (path,) = samples_files(root)
    assert first.train_set.store.mapped is not None  # the builder itself then reads from the file

    second = make_dm(tok_av, root, files)  # maps it: nothing rebuilt
    assert len(builds) == 2 and second.sample_builds == 0 and second.sample_maps == 1
    store = second.train_set.store
    assert isinstance(store.mapped[1], np.memmap) and store.path == path
    assert store.num_samples == fresh.train_set.store.num_samples == len(store.records)
    np.testing.assert_array_equal(store.lengths, fresh.train_set.store.lengths)
    assert store.sizes == fresh.train_set.store.sizes and store.offsets == fresh.train_set.store.offsets
    for i in range(store.num_samples):
        assert store.build(i) == fresh.train_set.store.build(i)
    assert_same(epoch_batches(second), epoch_batches(fresh))
    assert_same(epoch_batches(first), epoch_batches(fresh))


def test_changed_data_config_rebuilds(tok_av, filled_cache, builds):
    root, files = filled_cache
    make_dm(tok_av, root, files)
    make_dm(tok_av, root, files, interleave_ratio=[2, 10])  # another prompt layout: other samples
    assert len(builds) == 2 and len(samples_files(root)) == 2
    # an edited jsonl (one record fewer) is another key too
    lines = open(files["asr"]).read().splitlines()
    with open(files["asr"], "w") as f:
        f.write("\n".join(lines[:-1]) + "\n")
    dm = make_dm(tok_av, root, files)
    assert len(builds) == 3 and dm.sample_builds == 1 and len(samples_files(root)) == 3
    assert dm.train_set.store.sizes[0] == len(lines) - 1
    make_dm(tok_av, root, files, batch_size=1, seed=7)  # batching and order do not change the samples
    assert len(builds) == 3


def test_skip_counts_survive_the_file(tok_av, filled_cache):
    root, files = filled_cache
    lengths = make_dm(tok_av, root, files, map_samples=False).train_set.store.lengths
    MAXLEN = int(np.median(lengths))  # about half the samples are too long: counted skips
    fresh = make_dm(tok_av, root, files, map_samples=False, on_error="skip", max_len=MAXLEN)
    assert fresh.skip_counts().get("too_long", 0) > 0
    make_dm(tok_av, root, files, on_error="skip", max_len=MAXLEN)
    mapped = make_dm(tok_av, root, files, on_error="skip", max_len=MAXLEN)
    assert mapped.sample_maps == 1
    assert mapped.skip_counts() == fresh.skip_counts()
    assert_same(epoch_batches(mapped), epoch_batches(fresh))


@pytest.mark.parametrize("damage", ["truncate", "header", "offsets"])
def test_damaged_file_is_a_counted_rebuild_or_a_clear_error(tok_av, filled_cache, builds, damage):
    root, files = filled_cache
    fresh = make_dm(tok_av, root, files, map_samples=False)
    make_dm(tok_av, root, files)
    (path,) = samples_files(root)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) - 10]
    elif damage == "header":
        data[20:40] = b"\x00" * 20
    else:  # the first sample offset of the table (after the header) made inconsistent
        import struct

        (n,) = struct.unpack("<Q", bytes(data[8:16]))
        data[16 + n : 16 + n + 8] = struct.pack("<q", 5)
    path.write_bytes(bytes(data))
    with pytest.raises(SamplesFileError):
        dataset_mod.open_samples_file(path, make_dm(tok_av, root, files, map_samples=False).samples_key(
            fresh.train_sources))

    # another rank of the node (local rank 1) maps what local rank 0 wrote: a damaged file stops it, clearly
    from vita_audio.data.datamodule import VitaDataModule

    tok, av = tok_av
    other = VitaDataModule(tok, av, fresh.train_sources, interleave_ratio=[1, 10, 4, 10], max_len=160, batch_size=2,
                           cache_dir=str(root / "cache"), cache_name="energy", seed=3, open_rows=4)
    other.trainer = SimpleNamespace(global_rank=1, local_rank=1, world_size=2, current_epoch=0, training=True)
    with pytest.raises(SamplesFileError, match="local rank 0 of this node wrote it"):
        other.setup("fit")

    n = len(builds)
    dm = make_dm(tok_av, root, files)  # local rank 0: a counted rebuild, then the same batches
    assert len(builds) == n + 1 and dm.sample_rebuilds == 1 and dm.sample_builds == 1
    assert_same(epoch_batches(dm), epoch_batches(fresh))
    again = make_dm(tok_av, root, files)
    assert again.sample_maps == 1 and again.sample_rebuilds == 0


class RecordingStrategy:
    def __init__(self) -> None:
        self.barriers: list[str] = []

    def barrier(self, name: str | None = None) -> None:
        self.barriers.append(name)


def test_ranks_of_a_node_share_one_build(tok_av, filled_cache, builds):
    """Two ranks (run in turn here; under DDP the barrier orders them): rank 0 builds, rank 1 maps; both pass the
    barrier once per source list; their shards are those of unmapped ranks."""
    from vita_audio.data.datamodule import VitaDataModule

    root, files = filled_cache
    tok, av = tok_av
    sources = [{"path": files["asr"]}, {"path": files["tts"]}, {"path": files["sqa"]}]
    shards, plain = [], []
    for mapped in (True, False):
        for rank in range(2):
            dm = VitaDataModule(tok, av, sources, val_sources=[{"path": files["asr"]}], max_len=160, batch_size=1,
                                cache_dir=str(root / "cache"), cache_name="energy", map_samples=mapped)
            strategy = RecordingStrategy()
            dm.trainer = SimpleNamespace(global_rank=rank, local_rank=rank, world_size=2, current_epoch=0,
                                         training=True, strategy=strategy)
            dm.setup("fit")
            (shards if mapped else plain).append(epoch_batches(dm))
            if mapped:
                assert strategy.barriers == ["vita_samples_train", "vita_samples_val"]
                assert (dm.sample_builds, dm.sample_maps) == ((2, 0) if rank == 0 else (0, 2))
    # rank 0's two builds (train, val) wrote files; then the unmapped ranks build each list themselves
    assert len(builds) == 6 and all(b is not None for b in builds[:2]) and all(b is None for b in builds[2:])
    for a, b in zip(shards, plain):
        assert_same(a, b)


def test_bench_memory_samples_section_measures_both_ranks(tmp_path, capsys):
    """The benchmark's children in-process on a small synthetic set: the mapping rank maps, nothing is rebuilt."""
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "bench_memory", Path(__file__).resolve().parents[2] / "experiments" / "bench_memory.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.prepare_samples_data(40, str(tmp_path))
    rows = []
    for mode in ("build", "build+write", "map"):
        bench.samples_child(mode, str(tmp_path))
        rows.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert [(r["builds"], r["maps"]) for r in rows] == [(1, 0), (1, 0), (0, 1)]
    assert rows[0]["samples"] == rows[2]["samples"] == 40 and rows[0]["tokens"] == rows[2]["tokens"]
    assert rows[2]["file"] > 8 * rows[2]["tokens"]  # int32 ids + labels + offsets + header
