"""Audio vocabulary extension of a text tokenizer (method spec, section 1).

Layout appended to the text vocabulary, in order::

    special tokens of a named layout (SPECIAL_TOKEN_LAYOUTS), e.g. "audio_markers":
        <|begin_of_audio|> <|end_of_audio|> <|audio|>     (<|audio|> is a data-file placeholder)
    <|audio_0|> ... <|audio_{N-1}|>                        (plain tokens, one per codebook entry)

The "vita_audio" layout is the reference's 20 specials in the reference's order (most are unused vision
leftovers, but they fix the ids): on Qwen2.5 (151665 entries) <|begin_of_audio|> = 151674, <|end_of_audio|> =
151675, <|audio|> = 151684 and <|audio_0|> = 151685, as in a published VITA-Audio checkpoint.

Ids are always looked up by string, so a tokenizer that already holds these tokens (a published
VITA-Audio checkpoint) is used as it is and keeps its own ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

BEGIN_OF_AUDIO = "<|begin_of_audio|>"
END_OF_AUDIO = "<|end_of_audio|>"
AUDIO_PLACEHOLDER = "<|audio|>"
CONTEXT_OF_AUDIO = "<|context_of_audio|>"

AUDIO_MARKERS = (BEGIN_OF_AUDIO, END_OF_AUDIO, AUDIO_PLACEHOLDER)
# The reference layout (method spec, section 1), in order; ids follow from the order alone.
VITA_AUDIO_SPECIALS = (
    "<|begin_of_image|>", "<|end_of_image|>", "<|context_of_image|>",
    "<|begin_of_video|>", "<|end_of_video|>", "<|context_of_video|>",
    "<|begin_of_patch|>", "<|end_of_patch|>", "<|context_of_patch|>",
    BEGIN_OF_AUDIO, END_OF_AUDIO,
    "<|begin_of_quad|>", "<|end_of_quad|>", "<|begin_of_ref|>", "<|end_of_ref|>", "<|begin_of_box|>", "<|end_of_box|>",
    "<|image|>", "<|video|>", AUDIO_PLACEHOLDER,
)
# The Plus tokenizer adds <|context_of_audio|> right after <|end_of_audio|>.
_EOA = VITA_AUDIO_SPECIALS.index(END_OF_AUDIO) + 1
VITA_AUDIO_PLUS_SPECIALS = (*VITA_AUDIO_SPECIALS[:_EOA], CONTEXT_OF_AUDIO, *VITA_AUDIO_SPECIALS[_EOA:])
# The tiny preset's Plus layout: the audio markers with <|context_of_audio|> (the continuous-audio placeholder
# position of Plus prompts) right after <|end_of_audio|>.
AUDIO_MARKERS_PLUS = (BEGIN_OF_AUDIO, END_OF_AUDIO, CONTEXT_OF_AUDIO, AUDIO_PLACEHOLDER)

SPECIAL_TOKEN_LAYOUTS: dict[str, tuple[str, ...]] = {
    "audio_markers": AUDIO_MARKERS,  # the three audio tokens only (the tiny preset)
    "vita_audio": VITA_AUDIO_SPECIALS,  # reference checkpoint compatibility (the Qwen2.5 presets)
    "vita_audio_plus": VITA_AUDIO_PLUS_SPECIALS,
    "audio_markers_plus": AUDIO_MARKERS_PLUS,  # the tiny preset of the Plus variants
}


def special_tokens_of(layout: str | Sequence[str]) -> tuple[str, ...]:
    """The ordered special tokens of a named layout, or of an explicit list (which must hold the audio markers)."""
    if isinstance(layout, str):
        if layout not in SPECIAL_TOKEN_LAYOUTS:
            raise ValueError(f"unknown special-token layout {layout!r}; known: {', '.join(SPECIAL_TOKEN_LAYOUTS)}")
        return SPECIAL_TOKEN_LAYOUTS[layout]
    tokens = tuple(layout)
    missing = [t for t in AUDIO_MARKERS if t not in tokens]
    if missing or len(set(tokens)) != len(tokens):
        raise ValueError(f"a special-token list must hold each of {list(AUDIO_MARKERS)} once, got {list(tokens)}")
    return tokens


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
    context: int | None = None  # id of <|context_of_audio|> (Plus vocabularies: one per continuous-audio frame)

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


def extend_tokenizer(
    tokenizer, codebook_size: int, special_tokens: str | Sequence[str] = "audio_markers"
) -> AudioVocab:
    """Add the special tokens of `special_tokens` (a layout name or an ordered list), then `codebook_size` audio
    tokens, to an HF tokenizer (in place).

    Tokens already present are not added again; a tokenizer that already holds the audio markers and
    <|audio_0|> gets no special token at all (its own layout stays). Returns the ids, looked up by string.
    """
    if codebook_size <= 0:
        raise ValueError(f"codebook_size must be positive, got {codebook_size}")
    specials = list(special_tokens_of(special_tokens))
    vocab = tokenizer.get_vocab()
    if all(t in vocab for t in (*AUDIO_MARKERS, audio_token(0))):
        specials = []  # an already extended tokenizer (a checkpoint of ours, a published one) keeps its layout
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
        context=vocab.get(CONTEXT_OF_AUDIO),
    )
