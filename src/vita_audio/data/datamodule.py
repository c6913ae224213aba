"""`VitaDataModule`: VITA jsonl sources + the audio-token cache -> packed training batches.

    train_sources / val_sources (jsonl, ratio, num) --SampleStore--> validated samples (lengths known)
        --PackedDataset (mix, pack, shard by rank, batch)--> ResumableLoader --> {input_ids, labels,
        position_ids, sample_ids}: LongTensors (B, max_len); labels unshifted, -100 unsupervised; sample_ids -1 pad

Resuming: `ResumableLoader` is stateful (Lightning stores its `state_dict` in checkpoints); it counts the batches
the training loop actually processed (through `on_before_batch_transfer`, so Lightning's one-batch prefetch is not
counted) and a resumed run continues with the next batch of the same epoch. Skipped samples are counted per
reason (`skip_counts()` -> {reason: n}, logged by the training side as `data/skipped_<reason>`), logged at
setup and at the end of every epoch.

Samples built once per node (`map_samples`, default on): local rank 0 builds every sample of a source list and
writes them to `<cache_dir>/samples/<key>.samples` (flat int32 ids and labels + int64 offsets, memory-mapped by
readers), `key` hashing what the samples depend on (the jsonl files' paths, sizes and mtimes, the prompt settings,
the tokenizer's vocabulary, the audio vocabulary, the audio-token cache's meta and manifests). The other ranks
wait at a barrier and map the file; later runs with the same data map it too. A truncated or corrupted file is
rebuilt by local rank 0 (counted in `sample_rebuilds`, logged); a rank that cannot map what rank 0 wrote stops
with the reason. Plus data (encoder frames) is built per rank as before. An audio file edited in place without
re-running the tokenizer (whose manifest would change the key) is not noticed: delete `<cache_dir>/samples`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from vita_audio.audio.interface import AudioTokenizer
from vita_audio.data.cache import AudioCodeCache
from vita_audio.data.dataset import BATCH_INDEX_KEY, SAMPLES_FORMAT, PackedDataset, SampleStore, SamplesFileError
from vita_audio.data.feature_cache import AudioFeatureCache, build_feature_cache, feature_namespace, input_audio_paths
from vita_audio.data.mixing import Source, as_sources
from vita_audio.data.prompt import TTS_PROMPT, PromptBuilder
from vita_audio.data.records import ON_ERROR, SkipCounter
from vita_audio.model.vocab import AudioVocab

log = logging.getLogger(__name__)


class ResumableLoader(DataLoader):
    """A DataLoader over a `PackedDataset` that knows its position: `state_dict()` / `load_state_dict()`.

    Args:
        dataset: the packed dataset (it batches itself).
        num_workers: worker processes (each builds every num_workers-th batch).
        epoch_fn: returns the current epoch (the trainer's); without it the loader counts its own epochs.
        skips: counters reported when an epoch ends.
        pin_memory: page-locked batches (faster host-to-GPU copies).
    """

    def __init__(
        self,
        dataset: PackedDataset,
        num_workers: int = 0,
        epoch_fn: Callable[[], int | None] | None = None,
        skips: SkipCounter | None = None,
        name: str = "train",
        pin_memory: bool = False,
    ) -> None:
        super().__init__(dataset, batch_size=None, num_workers=num_workers, persistent_workers=False,
                         pin_memory=pin_memory)
        self.epoch_fn, self.skips, self.name = epoch_fn, skips, name
        self.epoch, self.yielded, self.processed = 0, 0, 0
        self.counted_by_trainer = False
        self._next_epoch = 0
        self._resume: dict[str, int] | None = None

    def __len__(self) -> int:
        return self.dataset.num_batches(self._current_epoch())

    def _current_epoch(self) -> int:
        e = self.epoch_fn() if self.epoch_fn is not None else None
        return self._next_epoch if e is None else int(e)

    def __iter__(self):
        epoch, start = self._current_epoch(), 0
        if self._resume is not None and self._resume["epoch"] == epoch:
            start = self._resume["batches"]
            log.info("%s loader resumes epoch %d at batch %d", self.name, epoch, start)
        self._resume = None
        ds: PackedDataset = self.dataset
        ds.epoch, ds.start_batch = epoch, start
        self.epoch, self.yielded, self.processed = epoch, start, start
        return self._generate(super().__iter__(), epoch)

    def _generate(self, it, epoch: int):
        for batch in it:
            self.yielded = int(batch.pop(BATCH_INDEX_KEY)) + 1
            yield batch
        self._next_epoch = epoch + 1
        if self.skips is not None and self.skips.counts:
            self.skips.report(f"{self.name} epoch {epoch}")

    def mark_processed(self) -> None:
        """Called by the datamodule for each batch the training loop really consumes."""
        self.counted_by_trainer = True
        self.processed += 1

    def state_dict(self) -> dict[str, int]:
        done = self.processed if self.counted_by_trainer else self.yielded
        return {"epoch": self.epoch, "batches": done, "seed": self.dataset.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state.get("seed", self.dataset.seed)) != self.dataset.seed:
            log.warning("resuming a data stream saved with seed %s under seed %s: the order will differ",
                        state.get("seed"), self.dataset.seed)
        self._resume = {"epoch": int(state["epoch"]), "batches": int(state["batches"])}
        self._next_epoch = int(state["epoch"])


class VitaDataModule(L.LightningDataModule):
    """Packed VITA-format training data. `tokenizer` and `audio_vocab` come from the backbone (not the YAML).

    The data YAML sets `_convert_: object`, so the `AudioVocab` passed to `hydra.utils.instantiate(cfg.data, ...)`
    arrives as itself (not as a DictConfig).

    Args:
        tokenizer: HF tokenizer with ChatML specials and the audio vocabulary.
        audio_vocab: ids of the audio markers and codes.
        train_sources: list of `{path, ratio, num, name}` (or paths) mixed for training.
        val_sources: the same for validation (used whole, in order, ratio/num still apply).
        interleave_ratio: `[T1, A1, T2, A2, ...]` text/audio interleaving of assistant targets; None = off.
        max_len: tokens per packed row; longer samples are errors (or skips).
        batch_size: rows per batch.
        val_batch_size: rows per validation batch (default: batch_size).
        num_workers: DataLoader workers.
        seed: mixing/shuffling seed (epoch e uses (seed, e)).
        on_error: "error" stops at the first bad sample; "skip" counts and skips it.
        cache_dir: root of the audio-token cache.
        cache_name: the cache namespace of the configured audio tokenizer (e.g. "builtin").
        audio_tokenizer: the configured audio tokenizer (YAML: `${audio.tokenizer}`), only to read its `identity`:
            the cache must have been filled by it (a retrained codec of the same size is caught). None = unchecked.
            Not kept (nor run): training reads codes only.
        audio_root: base for relative audio paths (default: each jsonl file's directory).
        open_rows: rows the best-fit packer keeps open (more = less padding, slower planning).
        shuffle: shuffle training samples (validation is never shuffled).
        tts_prompt: first line of TTS requests (their text is prepended to the target audio).
        pin_memory: page-locked batches for faster copies to a GPU.
        audio_encoder: Plus variants: the frozen continuous encoder (YAML: `${model.audio_encoder}`); input audio
            (system / user turns) is then read as its frames from the feature cache, batches carry
            `audio_features`. None = discrete input audio.
        feature_cache_name: the feature cache namespace (default: `features-<encoder identity>`).
        fill_features: encode the input audio files missing from the feature cache at setup (once per file; the
            encoder is dropped afterwards). False = a missing entry is an error (or a counted skip).
        map_samples: build the samples once per node into a memory-mapped file under `cache_dir/samples` (see the
            module docstring); False = every rank builds them and keeps the records.
    """

    def __init__(
        self,
        tokenizer: Any,
        audio_vocab: AudioVocab,
        train_sources: Sequence[Source | dict | str] = (),
        val_sources: Sequence[Source | dict | str] = (),
        interleave_ratio: Sequence[int] | None = None,
        max_len: int = 2048,
        batch_size: int = 4,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        on_error: str = "error",
        cache_dir: str = "artifacts/cache",
        cache_name: str = "builtin",
        audio_tokenizer: AudioTokenizer | None = None,
        audio_root: str | None = None,
        open_rows: int = 64,
        shuffle: bool = True,
        tts_prompt: str = TTS_PROMPT,
        pin_memory: bool = False,
        audio_encoder: Any = None,
        feature_cache_name: str | None = None,
        fill_features: bool = True,
        map_samples: bool = True,
    ) -> None:
        super().__init__()
        if on_error not in ON_ERROR:
            raise ValueError(f"data.on_error must be 'error' or 'skip', got {on_error!r}")
        if not isinstance(audio_vocab, AudioVocab):
            raise TypeError(f"audio_vocab must be an AudioVocab, got {type(audio_vocab).__name__} (instantiating "
                            "from YAML? the data config needs `_convert_: object`)")
        self.tokenizer, self.audio_vocab = tokenizer, audio_vocab
        self.train_sources, self.val_sources = as_sources(train_sources), as_sources(val_sources)
        self.interleave_ratio = None if interleave_ratio is None else [int(r) for r in interleave_ratio]
        self.max_len, self.batch_size = int(max_len), int(batch_size)
        self.val_batch_size = int(val_batch_size or batch_size)
        self.num_workers, self.seed, self.on_error = int(num_workers), int(seed), on_error
        self.cache_dir, self.cache_name, self.audio_root = str(cache_dir), cache_name, audio_root
        self.open_rows, self.shuffle, self.tts_prompt = int(open_rows), bool(shuffle), tts_prompt
        self.pin_memory = bool(pin_memory)
        self.audio_identity = None if audio_tokenizer is None else str(audio_tokenizer.identity)
        self._cache: AudioCodeCache | None = None
        self._builder: PromptBuilder | None = None
        self.audio_encoder, self.fill_features = audio_encoder, bool(fill_features)
        self.encoder_identity = None if audio_encoder is None else str(audio_encoder.identity)
        self.encoder_dim = None if audio_encoder is None else int(audio_encoder.dim)
        self.feature_cache_name = feature_cache_name or (
            None if audio_encoder is None else feature_namespace(self.encoder_identity))
        self._feature_cache: AudioFeatureCache | None = None
        self._filled = False
        self.map_samples = bool(map_samples)
        self.sample_builds, self.sample_maps, self.sample_rebuilds = 0, 0, 0  # source lists built / mapped here
        if audio_encoder is not None and audio_vocab.context is None:
            raise ValueError("data.audio_encoder is set (Plus) but the vocabulary has no <|context_of_audio|>: use a "
                             "Plus special-token layout (model.backbone.special_tokens)")
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else tokenizer.convert_tokens_to_ids("<|endoftext|>"))
        self.train_set: PackedDataset | None = None
        self.val_set: PackedDataset | None = None
        self._train_loader: ResumableLoader | None = None

    # -- setup ----------------------------------------------------------------------------------------------
    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def cache(self) -> AudioCodeCache:
        """The audio-token cache (one per datamodule, shared by train and val), checked against the vocabulary
        size and the audio tokenizer's identity on first use."""
        if self._cache is None:
            if self.audio_identity is None:
                log.warning("data.audio_tokenizer is null: the audio-token cache %s/%s is not checked against the "
                            "audio tokenizer's identity", self.cache_dir, self.cache_name)
            cache = AudioCodeCache(self.cache_dir, self.cache_name, self.audio_vocab.codebook_size,
                                   expected_identity=self.audio_identity)
            cache.meta()  # a missing or foreign cache stops here, whatever on_error says (never a per-sample skip)
            self._cache = cache
        return self._cache

    def prepare_data(self) -> None:
        """Plus: fill the feature cache (Lightning runs this on one process per node, before every rank's setup)."""
        self._fill_features()

    def _fill_features(self) -> None:
        """Encode the input audio of every train / val source missing from the feature cache (once per file)."""
        if self._filled or not self.fill_features or self.audio_encoder is None:
            return
        from vita_audio.data.records import read_jsonl

        skips = SkipCounter()  # bad records are counted (or raised) again when the samples are read
        sources = [*self.train_sources, *self.val_sources]
        records = [r for s in sources for r in read_jsonl(s.path, "skip", skips, self.audio_root)]
        build_feature_cache(input_audio_paths(records), self.audio_encoder, self.cache_dir,
                            self.feature_cache_name, on_error=self.on_error)
        self._filled = True

    def feature_cache(self) -> AudioFeatureCache | None:
        """Plus: the feature cache of the configured encoder (filled here when running as a single process; with
        several ranks `prepare_data` filled it)."""
        if self.encoder_identity is None:
            return None
        if self._rank()[1] == 1:
            self._fill_features()
        if self._feature_cache is None:
            cache = AudioFeatureCache(self.cache_dir, self.feature_cache_name, self.encoder_identity, self.encoder_dim)
            cache.meta()  # a missing or foreign cache stops here
            self._feature_cache = cache
        return self._feature_cache

    def _prompt_builder(self) -> PromptBuilder:
        """One builder serves train and val (it holds only what it looked up in the tokenizer)."""
        if self._builder is None:
            self._builder = PromptBuilder(self.tokenizer, self.audio_vocab, self.interleave_ratio, self.tts_prompt)
        return self._builder

    def samples_key(self, sources: list[Source]) -> str:
        """Hash of everything the built samples of `sources` depend on (the samples file's name)."""
        def stat(path: str | Path) -> list:
            try:
                st = os.stat(path)
            except OSError:
                return [str(path), None, None]
            return [os.path.abspath(path), st.st_size, st.st_mtime_ns]

        cache = self.cache()
        manifests = sorted((cache.root / "manifest").glob("*.json")) if (cache.root / "manifest").is_dir() else []
        vocab = hashlib.blake2b(json.dumps(sorted(self.tokenizer.get_vocab().items())).encode(), digest_size=16)
        what = {
            "format": SAMPLES_FORMAT, "sources": [stat(s.path) for s in sources], "audio_root": self.audio_root,
            "max_len": self.max_len, "on_error": self.on_error, "interleave_ratio": self.interleave_ratio,
            "tts_prompt": self.tts_prompt, "tokenizer": [len(self.tokenizer), vocab.hexdigest()],
            "audio_vocab": repr(self.audio_vocab), "cache": [str(cache.root.resolve()), cache.meta(),
                                                             [stat(m) for m in manifests]],
        }
        return hashlib.blake2b(json.dumps(what, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()

    def _local_rank(self) -> int:
        trainer = getattr(self, "trainer", None)
        return 0 if trainer is None else int(getattr(trainer, "local_rank", getattr(trainer, "global_rank", 0)))

    def _barrier(self, name: str) -> None:
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1 and hasattr(trainer, "strategy"):
            trainer.strategy.barrier(name)

    def _store(self, sources: list[Source], split: str) -> SampleStore:
        """The samples of `sources`: built here, or (map_samples) built by local rank 0 into a samples file that
        every rank maps."""
        store = SampleStore(sources, self._prompt_builder(), self.cache(), self.max_len, self.on_error, self.audio_root,
                            self.feature_cache())
        if not self.map_samples or store.feature_cache is not None:
            self.sample_builds += 1
            return store.load()
        key = self.samples_key(sources)
        path = Path(self.cache_dir) / "samples" / f"{key}.samples"
        if self._local_rank() == 0:
            try:
                store.open(path, key)
                self.sample_maps += 1
                log.info("%s samples mapped from %s (%d samples)", split, path, store.num_samples)
            except SamplesFileError as err:
                if path.exists():
                    self.sample_rebuilds += 1
                    log.warning("%s; rebuilding it", err)
                store.load(save_to=path, key=key)
                self.sample_builds += 1
                log.info("%s samples built and written to %s (%d samples, %.1f MB)", split, path, store.num_samples,
                         path.stat().st_size / 1e6)
        self._barrier(f"vita_samples_{split}")
        if self._local_rank() != 0:
            try:
                store.open(path, key)
            except SamplesFileError as err:
                raise SamplesFileError(f"{err}: local rank 0 of this node wrote it just before (is {self.cache_dir} "
                                       "writable, and the same path on every rank of the node?)") from err
            self.sample_maps += 1
        return store

    def _dataset(self, sources: list[Source], batch_size: int, shuffle: bool, split: str = "train") -> PackedDataset:
        store = self._store(sources, split)
        rank, world = self._rank()
        return PackedDataset(store, batch_size, self.max_len, self.pad_id, self.seed, shuffle, self.open_rows,
                             rank, world)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None and self.train_sources and stage in (None, "fit"):
            self.train_set = self._dataset(self.train_sources, self.batch_size, self.shuffle, "train")
            self.train_set.store.skips.report("train data")
            log.info("train data: %d samples from %d sources, %d batches of %d x %d per epoch on rank %d/%d, "
                     "padding %.2f%%", self.train_set.store.num_samples, len(self.train_sources),
                     self.train_set.num_batches(0), self.batch_size, self.max_len, self.train_set.rank,
                     self.train_set.world_size, 100 * self.padding_fraction(0))
        if self.val_set is None and self.val_sources and stage in (None, "fit", "validate"):
            self.val_set = self._dataset(self.val_sources, self.val_batch_size, False, "val")
            self.val_set.store.skips.report("val data")
        if self.audio_encoder is not None and (self.train_set is not None or not self.train_sources) and (
                self.val_set is not None or not self.val_sources):
            self.audio_encoder = None  # every input audio is in the feature cache: the encoder is not needed

    # -- loaders --------------------------------------------------------------------------------------------
    def _epoch(self) -> int | None:
        trainer = getattr(self, "trainer", None)
        return None if trainer is None else int(trainer.current_epoch)

    def train_dataloader(self) -> ResumableLoader:
        if self.train_set is None:
            self.setup("fit")
        if self.train_set is None:
            raise ValueError("data.train_sources is empty: nothing to train on")
        self._train_loader = ResumableLoader(self.train_set, self.num_workers, self._epoch,
                                             self.train_set.store.skips, "train", self.pin_memory)
        return self._train_loader

    def val_dataloader(self) -> ResumableLoader | list:
        if self.val_set is None:
            self.setup("validate")
        if self.val_set is None:
            return []
        return ResumableLoader(self.val_set, self.num_workers, lambda: 0, self.val_set.store.skips, "val",
                               self.pin_memory)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.training and self._train_loader is not None:
            self._train_loader.mark_processed()
        return batch

    # -- reporting ------------------------------------------------------------------------------------------
    def skip_counts(self) -> dict[str, int]:
        """`{reason: n}` of skipped samples over train and val sources (constant after setup); the training side
        logs them as `data/skipped_<reason>`."""
        total = SkipCounter()
        for ds in (self.train_set, self.val_set):
            if ds is not None:
                total.merge(ds.store.skips)
        return {k: int(v) for k, v in sorted(total.counts.items())}

    def padding_fraction(self, epoch: int = 0) -> float:
        from vita_audio.data.packing import padding_fraction

        ds = self.train_set
        return 0.0 if ds is None else padding_fraction(ds.store.lengths, ds.rows(epoch), self.max_len)
