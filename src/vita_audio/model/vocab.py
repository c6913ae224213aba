"""Audio vocabulary extension of a text tokenizer (method spec, section 1).

Layout appended to the text vocabulary, in order::

    <|begin_of_audio|> <|end_of_audio|> <|audio|>   (special tokens; <|audio|> is a data-file placeholder)
    <|audio_0|> ... <|audio_{N-1}|>                  (plain tokens, one per codebook entry)

Ids are always looked up by string, so a tokenizer that already holds these tokens (a published
VITA-Audio checkpoint) is used as it is and keeps its own ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

BEGIN_OF_AUDIO = "<|begin_of_audio|>"
END_OF_AUDIO = "<|end_of_audio|>"
AUDIO_PLACEHOLDER = "<|audio|>"


def audio_token(code: int) -> str:
    return f"<|audio_{code}|>"


@dataclass(frozen=True)
class AudioVocab:
    """Ids of the audio part of the vocabulary. Audio codes map to a contiguous id range."""

    begin_of_audio: int
    end_of_audio: int
    placeholder: int
    audio_offset: int  # id of <|audio_0|>
    codebook_size: int

    @property
    def audio_end(self) -> int:
        """One past the id of the last audio token."""
        return self.audio_offset + self.codebook_size

    def codes_to_ids(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(
                f"audio codes must lie in [0, {self.codebook_size}), got range "
                f"[{int(codes.min())}, {int(codes.max())}]: does the audio tokenizer match the vocabulary?"
            )
        return codes.long() + self.audio_offset

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Audio codes of the audio ids in `ids` (other ids are dropped: select with `is_audio` first)."""
        ids = ids[self.is_audio(ids)]
        return ids - self.audio_offset

    def is_audio(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids >= self.audio_offset) & (ids < self.audio_end)


def extend_tokenizer(tokenizer, codebook_size: int, extra_special_tokens: tuple[str, ...] = ()) -> AudioVocab:
    """Add the audio markers and `codebook_size` audio tokens to an HF tokenizer (in place).

    Tokens already present are not added again. Returns the ids, looked up by string.
    """
    if codebook_size <= 0:
        raise ValueError(f"codebook_size must be positive, got {codebook_size}")
    specials = [*extra_special_tokens, BEGIN_OF_AUDIO, END_OF_AUDIO, AUDIO_PLACEHOLDER]
    vocab = tokenizer.get_vocab()
    missing = [t for t in specials if t not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    audio = [audio_token(i) for i in range(codebook_size)]
    vocab = tokenizer.get_vocab()
    missing_audio = [t for t in audio if t not in vocab]
    if missing_audio:
        tokenizer.add_tokens(missing_audio)
    return audio_vocab_of(tokenizer, codebook_size)


def audio_vocab_of(tokenizer, codebook_size: int) -> AudioVocab:
    """Look up the audio ids of a tokenizer that already holds the audio vocabulary."""
    vocab = tokenizer.get_vocab()
    for tok in (BEGIN_OF_AUDIO, END_OF_AUDIO, AUDIO_PLACEHOLDER, audio_token(0)):
        if tok not in vocab:
            raise KeyError(f"tokenizer has no {tok!r}: extend it with vita_audio.model.vocab.extend_tokenizer first")
    offset = vocab[audio_token(0)]
    last = audio_token(codebook_size - 1)
    if vocab.get(last) != offset + codebook_size - 1:
        raise ValueError(
            f"audio tokens are not contiguous from id {offset}: {last!r} has id {vocab.get(last)}, "
            f"expected {offset + codebook_size - 1}"
        )
    return AudioVocab(
        begin_of_audio=vocab[BEGIN_OF_AUDIO],
        end_of_audio=vocab[END_OF_AUDIO],
        placeholder=vocab[AUDIO_PLACEHOLDER],
        audio_offset=offset,
        codebook_size=codebook_size,
    )
