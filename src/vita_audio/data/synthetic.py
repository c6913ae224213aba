"""A synthetic data module: packed rows of random ChatML-like samples with interleaved audio codes.

It needs no files, so it feeds smoke tests and framework benchmarks. It is not the default recipe: the
embedded default trains on the offline speech corpus (`data=corpus`). Samples follow the batch contract of
`vita_audio.data` exactly (input_ids, labels, position_ids, sample_ids; padding has sample id -1), and they
carry learnable structure: the audio codes of a sample are a fixed function of its text tokens.

Batch i of the stream is a pure function of (seed, i), so the stream resumes exactly from any batch index.
Under DDP rank r of W reads global batches r, r + W, r + 2W, ... of the same stream: the ranks see different
data, and together they see what one process would (in a different order).
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from vita_audio.data.packing import collate_rows
from vita_audio.model.loss import IGNORE_INDEX
from vita_audio.model.vocab import AudioVocab


class SyntheticStream(IterableDataset):
    """Infinite (or `num_batches`-long) stream of packed batches (B, T), starting at batch `start`.

    The stream's n-th batch is global batch `n * stride + offset` (stride = world size, offset = rank)."""

    def __init__(
        self,
        vocab: AudioVocab,
        text_vocab_size: int,
        special_ids: tuple[int, int, int],  # (<|im_start|>, <|im_end|>, pad)
        batch_size: int,
        max_len: int,
        seed: int,
        num_batches: int | None = None,
        start: int = 0,
        stride: int = 1,
        offset: int = 0,
    ) -> None:
        self.vocab, self.text_vocab_size = vocab, text_vocab_size
        self.im_start, self.im_end, self.pad = special_ids
        self.batch_size, self.max_len, self.seed = batch_size, max_len, seed
        self.num_batches, self.start = num_batches, start
        self.stride, self.offset = stride, offset

    def sample(self, g: torch.Generator) -> tuple[list[int], list[int]]:
        """One sample: `<|im_start|> text <|im_end|>` prompt, then an interleaved text/audio answer."""
        n_text = int(torch.randint(2, 8, (1,), generator=g))
        text = torch.randint(300, self.text_vocab_size, (n_text,), generator=g)
        # audio codes: each text token "speaks" as 3 codes derived from it (learnable, deterministic)
        codes = torch.stack([(text * 7 + j * 13) % self.vocab.codebook_size for j in range(3)], 1).flatten()
        prompt = [self.im_start, *text.tolist(), self.im_end]
        answer: list[int] = []
        for t, chunk in zip(text.tolist(), codes.view(-1, 3).tolist()):
            answer += [t, self.vocab.begin_of_audio, *(c + self.vocab.audio_offset for c in chunk), self.vocab.end_of_audio]
        answer.append(self.im_end)
        ids = prompt + answer
        labels = [IGNORE_INDEX] * len(prompt) + answer
        return ids, labels

    def batch(self, index: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        rows = []
        for _ in range(self.batch_size):  # whole samples per row until the next one would not fit
            row, used = [], 0
            while True:
                ids, lab = self.sample(g)
                if used + len(ids) > self.max_len:
                    break
                row.append((ids, lab))
                used += len(ids)
            rows.append(row)
        return collate_rows(rows, self.max_len, self.pad)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        index = self.start
        while self.num_batches is None or index < self.num_batches:
            yield self.batch(index * self.stride + self.offset)
            index += 1


class SyntheticDataModule(L.LightningDataModule):
    """Synthetic packed batches for smoke tests and benchmarks (see the module docstring).

    Args:
        tokenizer, audio_vocab: passed in by train.py from the backbone.
        batch_size: rows per batch; max_len: tokens per row.
        val_batches: size of the fixed validation set.
        seed: the stream is a pure function of it.
    """

    def __init__(
        self,
        tokenizer,
        audio_vocab: AudioVocab,
        batch_size: int = 4,
        max_len: int = 256,
        val_batches: int = 2,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.audio_vocab = audio_vocab
        vocab = tokenizer.get_vocab()
        self.special_ids = (vocab["<|im_start|>"], vocab["<|im_end|>"], tokenizer.pad_token_id)
        self.text_vocab_size = min(audio_vocab.begin_of_audio, tokenizer.vocab_size)
        self.batch_size, self.max_len, self.val_batches = batch_size, max_len, val_batches
        self.seed, self.num_workers = seed, num_workers
        self._resume_batch = 0

    def _stream(self, seed: int, num_batches: int | None, start: int, stride: int = 1,
                offset: int = 0) -> SyntheticStream:
        return SyntheticStream(
            self.audio_vocab, self.text_vocab_size, self.special_ids, self.batch_size, self.max_len,
            seed, num_batches, start, stride, offset,
        )

    def train_dataloader(self) -> DataLoader:
        start, self._resume_batch = self._resume_batch, 0  # batches this rank consumed before a resume
        trainer = self.trainer
        world, rank = (1, 0) if trainer is None else (trainer.world_size, trainer.global_rank)
        stream = self._stream(self.seed, None, start, stride=world, offset=rank)
        return DataLoader(stream, batch_size=None, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        stream = self._stream(self.seed + 1_000_000, self.val_batches, 0)
        return DataLoader(stream, batch_size=None, num_workers=0)

    # Resumable: the checkpoint stores how many training batches were consumed.
    def state_dict(self) -> dict[str, int]:
        trainer = self.trainer
        done = 0 if trainer is None else trainer.fit_loop.epoch_loop.batch_progress.total.processed
        return {"train_batches_consumed": int(done)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume_batch = int(state["train_batches_consumed"])

    def skip_counts(self) -> dict[str, int]:
        return {}
