"""From validated records to packed batches: `SampleStore` (records + codes -> ids/labels) and `PackedDataset`.

    sources (jsonl) --read_jsonl--> records --SampleStore.load: build each once, measure, validate--> lengths
    epoch e: epoch_order(seed, e) -> plan_rows(lengths) -> rows of the whole mix
             -> rank r takes rows r, r+W, ... of the rows repeated to a multiple of W (`shard_rows`: equal counts
             on every rank, even with fewer rows than ranks) -> batches of `batch_size` rows
             -> batch j is produced by worker (j - start) % num_workers, built from the cache on the fly

Everything about an epoch is a pure function of (seed, epoch), so `start_batch` resumes mid-epoch exactly and
every rank agrees on the number of batches (DDP never waits on a rank that ran out).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import struct
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from vita_audio.data.cache import AudioCodeCache, CacheError
from vita_audio.data.feature_cache import AudioFeatureCache, audio_roles
from vita_audio.data.mixing import Source, epoch_order
from vita_audio.data.packing import collate_rows, plan_rows
from vita_audio.data.prompt import PromptBuilder
from vita_audio.data.records import DataError, Record, SkipCounter, handle, read_jsonl

log = logging.getLogger(__name__)

BATCH_INDEX_KEY = "_batch_index"  # popped by the loader before the batch reaches the model

SAMPLES_MAGIC = b"VITASMP1"
SAMPLES_FORMAT = 1  # bump when PromptBuilder changes what a record builds to: older files are then rebuilt


class SamplesFileError(ValueError):
    """A samples file that is missing, truncated, corrupted or written for other data."""


def write_samples_file(path: str | Path, key: str, starts: np.ndarray, ids: array, labels: array,
                       sizes: list[int], offsets: list[int], skips: SkipCounter) -> None:
    """The built samples as one memory-mappable file, written atomically (temp name + rename):

        magic (8 bytes) | header length (u64) | JSON header, padded to 8 bytes
        | starts int64 [N + 1] (sample i = tokens starts[i]:starts[i+1]) | ids int32 [T] | labels int32 [T]
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = json.dumps({"format": SAMPLES_FORMAT, "key": key, "num_samples": len(starts) - 1,
                         "num_tokens": len(ids), "sizes": sizes, "offsets": offsets,
                         "skips": dict(skips.counts), "skip_examples": skips.examples}).encode()
    header += b" " * (-(len(SAMPLES_MAGIC) + 8 + len(header)) % 8)
    tmp = path.with_name(f"{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(SAMPLES_MAGIC + struct.pack("<Q", len(header)) + header)
        f.write(np.ascontiguousarray(starts, dtype="<i8").tobytes())
        np.frombuffer(ids, dtype=np.int32).astype("<i4", copy=False).tofile(f)
        np.frombuffer(labels, dtype=np.int32).astype("<i4", copy=False).tofile(f)
    tmp.replace(path)


def open_samples_file(path: str | Path, key: str) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """(header, starts, ids, labels) of a samples file, the arrays memory-mapped (read-only, nothing loaded but
    the small header and `starts`); `SamplesFileError` when it is not a complete file for `key`."""
    path = Path(path)
    if not path.is_file():
        raise SamplesFileError(f"samples file {str(path)!r} does not exist")
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            magic = f.read(8)
            (n,) = struct.unpack("<Q", f.read(8))
            if magic != SAMPLES_MAGIC or n > size:
                raise ValueError("not a samples file (bad magic or header length)")
            header = json.loads(f.read(n))
        base = 16 + n
        N, T = int(header["num_samples"]), int(header["num_tokens"])
    except (ValueError, KeyError, TypeError, struct.error) as err:
        raise SamplesFileError(f"samples file {str(path)!r} is unreadable ({type(err).__name__}: {err})") from err
    if header.get("format") != SAMPLES_FORMAT or header.get("key") != key:
        raise SamplesFileError(f"samples file {str(path)!r} was written for other data or by another version "
                               f"(format {header.get('format')}, key {header.get('key')})")
    want = base + 8 * (N + 1) + 8 * T
    if size != want:
        raise SamplesFileError(f"samples file {str(path)!r} is truncated or corrupted: {size} bytes, its header "
                               f"says {want} ({N} samples, {T} tokens)")
    starts = np.fromfile(path, dtype="<i8", count=N + 1, offset=base)
    if starts[0] != 0 or starts[-1] != T or (np.diff(starts) <= 0).any() or sum(header["sizes"]) != N:
        raise SamplesFileError(f"samples file {str(path)!r} is corrupted (sample offsets inconsistent)")
    ids = np.memmap(path, dtype="<i4", mode="r", offset=base + 8 * (N + 1), shape=(T,)) if T else np.zeros(0, "<i4")
    labels = (np.memmap(path, dtype="<i4", mode="r", offset=base + 8 * (N + 1) + 4 * T, shape=(T,)) if T
              else np.zeros(0, "<i4"))
    return header, starts, ids, labels


class MappedRecords(Sequence):
    """Stands for the records of a mapped store: their number only (the samples are in the file)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        raise IndexError("the records of a mapped samples file are not kept (SampleStore.build(i) reads sample i; "
                         "data.map_samples=false keeps them)")


class SampleStore:
    """The validated records of some sources, their token lengths, and `build(i)` -> (ids, labels)."""

    def __init__(
        self,
        sources: Sequence[Source],
        builder: PromptBuilder,
        cache: AudioCodeCache,
        max_len: int,
        on_error: str = "error",
        audio_root: str | None = None,
        feature_cache: AudioFeatureCache | None = None,
    ) -> None:
        self.sources = list(sources)
        # Plus: input audio (system / user turns) as encoder frames from this cache; samples are then
        # (ids, labels, [frames (N_i, D) of each input audio, in order])
        self.feature_cache = feature_cache
        self.builder, self.cache, self.max_len = builder, cache, max_len
        self.on_error, self.audio_root = on_error, audio_root
        self.records: list[Record] = []
        self.offsets: list[int] = []  # first flat index of each source
        self.sizes: list[int] = []  # valid records per source
        self.lengths = np.zeros(0, dtype=np.int64)
        self.skips = SkipCounter()
        # samples mapped from a file (`open`): sample i = tokens starts[i]:starts[i+1] of ids / labels
        self.mapped: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.path: Path | None = None

    @property
    def num_samples(self) -> int:
        return len(self.lengths)

    def build(self, i: int) -> tuple[list[int], list[int]]:
        """(input_ids, labels) of sample i: read from the mapped file, or built (audio codes from the cache)."""
        if self.mapped is not None:
            starts, ids, labels = self.mapped
            a, b = int(starts[i]), int(starts[i + 1])
            return ids[a:b].tolist(), labels[a:b].tolist()
        return self.build_record(self.records[i])

    @property
    def feature_dim(self) -> int | None:
        """Width of the encoder frames of Plus samples (None: discrete input audio)."""
        return None if self.feature_cache is None else int(self.feature_cache.meta()["dim"])

    def build_record(self, rec: Record) -> tuple:
        roles = audio_roles(rec.messages) if self.feature_cache is not None else ["assistant"] * len(rec.audios)
        try:
            codes = [self.cache.get(a) if r == "assistant" else self.feature_cache.get(a)
                     for a, r in zip(rec.audios, roles)]
        except CacheError as e:
            raise DataError("cache_missing", str(e), rec.source, rec.line) from e
        try:
            ids, labels = self.builder.build(rec.messages, codes)
        except ValueError as e:  # codes outside the audio vocabulary
            raise DataError("bad_codes", str(e), rec.source, rec.line) from e
        if self.feature_cache is None:
            return ids, labels
        return ids, labels, [c for c, r in zip(codes, roles) if r != "assistant"]

    def load(self, save_to: str | Path | None = None, key: str = "") -> SampleStore:
        """Read every source, build every sample once to measure it; bad samples raise or are counted.

        With `save_to` (discrete input audio only), the built samples are also written there as a samples file
        for `key` (`write_samples_file`) and the store then reads them from it (`open`): the records are dropped."""
        if save_to is not None and self.feature_cache is not None:
            raise ValueError("samples with encoder frames (Plus) are not written to a samples file")
        starts, ids, labels = array("q", [0]), array("i"), array("i")
        lengths: list[int] = []
        hashed_before = sum(self.cache.hashed.values())
        for src in self.sources:
            self.offsets.append(len(self.records))
            n0 = len(self.records)
            for rec in read_jsonl(src.path, self.on_error, self.skips, self.audio_root):
                try:
                    built = self.build_record(rec)
                    n = len(built[0])
                    if n > self.max_len:
                        raise DataError(
                            "too_long", f"sample has {n} tokens, more than max_len {self.max_len} (raise data.max_len "
                            "or shorten the sample)", rec.source, rec.line)
                except DataError as err:
                    handle(err, self.on_error, self.skips)
                    continue
                self.records.append(rec)
                lengths.append(n)
                if save_to is not None:
                    ids.extend(built[0])
                    labels.extend(built[1])
                    starts.append(starts[-1] + n)
            self.sizes.append(len(self.records) - n0)
            if self.sizes[-1] == 0:
                log.warning("data source %s has no usable sample", src.label)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if sum(self.cache.hashed.values()) > hashed_before:  # audio read to hash it: the manifest did not cover it
            log.info(self.cache.hash_report())
        if save_to is not None:
            write_samples_file(save_to, key, np.frombuffer(starts, dtype=np.int64), ids, labels, self.sizes,
                               self.offsets, self.skips)
            del ids, labels
            self.open(save_to, key)
        return self

    def open(self, path: str | Path, key: str) -> SampleStore:
        """Map the samples file at `path` (written by `load(save_to=...)` for `key`) instead of building: lengths,
        per-source sizes and the skip counts come from it; `build(i)` reads the mapped tokens. Raises
        `SamplesFileError` for a missing, truncated or foreign file."""
        header, starts, ids, labels = open_samples_file(path, key)
        if len(header["sizes"]) != len(self.sources):
            raise SamplesFileError(f"samples file {str(path)!r} holds {len(header['sizes'])} sources, the config "
                                   f"{len(self.sources)}")
        self.sizes, self.offsets = [int(v) for v in header["sizes"]], [int(v) for v in header["offsets"]]
        self.lengths = np.diff(starts).astype(np.int64)
        self.skips = SkipCounter()
        self.skips.counts.update({k: int(v) for k, v in header["skips"].items()})
        self.skips.examples.update(header["skip_examples"])
        self.records = MappedRecords(len(self.lengths))  # not kept: every sample is in the file
        self.mapped, self.path = (starts, ids, labels), Path(path)
        return self

    def order(self, seed: int, epoch: int, shuffle: bool) -> list[int]:
        """Flat sample indices of one epoch of the mix."""
        return [self.offsets[s] + i for s, i in epoch_order(self.sizes, self.sources, seed, epoch, shuffle)]


def shard_rows(rows: Sequence[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """Rank `rank`'s share of `rows`: rows rank, rank + W, ... of the rows repeated cyclically to ceil(n / W) * W.

    Every rank gets exactly ceil(n / W) rows, so with the same `batch_size` every rank yields the same number of
    batches, and batch j has the same number of rows on every rank (DDP collectives never wait on a rank that ran
    out). With fewer rows than ranks the rows repeat as often as needed (1 row on 8 ranks: each rank gets it);
    otherwise at most W - 1 rows appear twice. With W = 1 the rows are returned unchanged; no rows give no rows.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside [0, world_size={world_size})")
    n = len(rows)
    if world_size == 1 or n == 0:
        return list(rows)
    per = math.ceil(n / world_size)
    return [rows[i % n] for i in range(rank, per * world_size, world_size)]


class PackedDataset(IterableDataset):
    """Batches (dicts of LongTensors (B, max_len)) of one epoch for one rank, from `start_batch` on.

    The loader sets `epoch` and `start_batch` before each iteration. Each batch carries its index under
    `BATCH_INDEX_KEY`, which `ResumableLoader` removes.
    """

    def __init__(
        self,
        store: SampleStore,
        batch_size: int,
        max_len: int,
        pad_id: int,
        seed: int = 0,
        shuffle: bool = True,
        open_rows: int = 64,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.store, self.batch_size, self.max_len, self.pad_id = store, batch_size, max_len, pad_id
        self.seed, self.shuffle, self.open_rows = seed, shuffle, open_rows
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start_batch = 0, 0
        self._plan: tuple[int, list[list[int]]] | None = None

    def all_rows(self, epoch: int) -> list[list[int]]:
        """Rows of the whole mix (all ranks) for one epoch."""
        order = self.store.order(self.seed, epoch, self.shuffle)
        return plan_rows(self.store.lengths, order, self.max_len, self.open_rows)

    def rows(self, epoch: int) -> list[list[int]]:
        """This rank's rows: `shard_rows` of the epoch's rows (the same count on every rank)."""
        if self._plan is None or self._plan[0] != epoch:
            self._plan = (epoch, shard_rows(self.all_rows(epoch), self.rank, self.world_size))
        return self._plan[1]

    def num_batches(self, epoch: int | None = None) -> int:
        return math.ceil(len(self.rows(self.epoch if epoch is None else epoch)) / self.batch_size)

    def __len__(self) -> int:
        return self.num_batches()

    def batch(self, epoch: int, j: int) -> dict[str, torch.Tensor]:
        rows = self.rows(epoch)[j * self.batch_size : (j + 1) * self.batch_size]
        return collate_rows([[self.store.build(i) for i in r] for r in rows], self.max_len, self.pad_id,
                            self.store.feature_dim)

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        w, nw = (0, 1) if info is None else (info.id, info.num_workers)
        if info is not None:
            torch.set_num_threads(1)
        for j in range(self.start_batch, self.num_batches(self.epoch)):
            if (j - self.start_batch) % nw == w:  # the DataLoader reads workers round-robin: keeps batch order
                yield {**self.batch(self.epoch, j), BATCH_INDEX_KEY: j}
