"""Text forcing: when the text of an interleaved answer is known (TTS: it is the input text), the decoder emits it
itself, chunk by chunk, and the model writes only the audio.

A TTS answer is trained as `text_1 <boa> audio_1 <eoa> text_2 <boa> audio_2 <eoa> ...` with text chunks of the
checkpoint's interleave ratio (Boost [1, 10, 4, 10]: 1, 4, 4, ... tokens; `data/interleave.py`). With forcing, per row:

    outside an audio span, text left:  the next chunk's text tokens, one per step, then <|begin_of_audio|>
    inside a span with text after it:  the model's tokens (codes or <|end_of_audio|>), <|end_of_audio|> forced once
                                       the span holds the ratio's audio size (Boost: 8), as every chunk but the
                                       last is trained; no stop: the answer cannot end before its text
    inside the last span:              the model's tokens (codes, <|end_of_audio|> or a stop)
    after the last span:               the model's token (<|begin_of_audio|> for more audio, or a stop)

So the text channel of the answer is exactly the forced text (the router's text = the tokenizer's decoding of those
ids), whole unless `max_new_tokens` runs out first. A forced token
costs no model call; the row's next model step is a backbone step, which consumes the forced tokens (the MCTP levels
need their h^0), so an MCTP run starts again from module 0 after it. Training puts all text left over into the last
chunk when the audio runs out first; decoding cannot know the audio's length, so every chunk follows the ratio.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vita_audio.checkpoint.generation import stored_schedule
from vita_audio.data.interleave import chunk_sizes
from vita_audio.inference.heads import span_markers

FORCED = -2  # `Step.modules` of a forced token (no model call)


class TextForcer:
    """Which token each row must emit next, and the logits mask of the rows' free steps.

    Args:
        texts: per row, the answer's text ids to force, or None (that row decodes freely).
        ratio: the interleave ratio [T1, A1, T2, A2, ...] of the answers (`data/interleave.py`).
        begin, end: <|begin_of_audio|>, <|end_of_audio|> ids.
        codes: (lo, hi) id range of the audio codes.
        stop_ids: the decoder's stop ids.
        vocab_size, valid: rows of the head, ids with a tokenizer entry (< valid).
    """

    def __init__(self, texts: Sequence[Sequence[int] | None], ratio: Sequence[int], begin: int, end: int,
                 codes: tuple[int, int], stop_ids: Sequence[int], vocab_size: int, valid: int,
                 device: torch.device | str = "cpu") -> None:
        self.t_sizes, self.a_sizes = chunk_sizes(ratio)
        lo, hi = codes
        self.texts: list[list[int] | None] = []
        for i, t in enumerate(texts):
            if t is None:
                self.texts.append(None)
                continue
            ids = [int(x) for x in t]
            bad = [x for x in ids if not 0 <= x < valid or lo <= x < hi or x in (begin, end) or x in stop_ids]
            if not ids or bad:
                raise ValueError(f"force_text row {i}: expected a non-empty list of text token ids (no audio codes, "
                                 f"markers or stop ids, each < {valid}), got " + (f"{bad[:5]}" if bad else "[]"))
            self.texts.append(ids)
        self.begin, self.end = begin, end
        rows = len(self.texts)
        self.pos = [0] * rows  # text tokens emitted
        self.chunk = [0] * rows  # audio spans opened
        self.in_chunk = [0] * rows  # text tokens of the current chunk emitted
        self.in_span = [0] * rows  # tokens emitted inside the open span
        self.rows = torch.tensor([t is not None for t in self.texts], dtype=torch.bool, device=device)  # (B,)
        stops = [i for i in stop_ids if 0 <= i < valid]
        audio = torch.zeros(vocab_size, dtype=torch.bool, device=device)  # (V,) a span's tokens, text still to come
        audio[lo:hi] = True
        audio[end] = True
        last = audio.clone()  # (V,) the last span's: it may end the answer
        last[stops] = True
        after = torch.zeros(vocab_size, dtype=torch.bool, device=device)  # (V,) after the last span: another, or stop
        after[[begin, *stops]] = True
        self.banned = torch.stack([~audio, ~last, ~after])  # (3, V) by row state: see `restrict`
        self.device = device

    @staticmethod
    def _size(sizes: list[int], i: int) -> int:
        return sizes[min(i, len(sizes) - 1)]

    def tokens(self, in_span: Sequence[bool]) -> list[int | None]:
        """The token each row must emit at this step (None: the model's)."""
        out: list[int | None] = []
        for i, text in enumerate(self.texts):
            if text is None:
                out.append(None)
            elif in_span[i]:  # a chunk with text after it has the ratio's audio size: close it there
                full = self.in_span[i] >= self._size(self.a_sizes, self.chunk[i] - 1)
                out.append(self.end if self.pos[i] < len(text) and full else None)
            elif self.pos[i] < len(text) and self.in_chunk[i] < self._size(self.t_sizes, self.chunk[i]):
                out.append(text[self.pos[i]])
            elif self.in_chunk[i] > 0:  # the chunk's text is out: open its audio span
                out.append(self.begin)
            else:
                out.append(None)
        return out

    def advance(self, forced: Sequence[int | None], tokens: Sequence[int], in_span: Sequence[bool]) -> None:
        """Record the emitted `tokens` (one per row; `forced` as `tokens()` gave them, `in_span` before them)."""
        for i, tok in enumerate(tokens):
            if self.texts[i] is None:
                continue
            if tok == self.begin:
                self.chunk[i] += 1
                self.in_chunk[i] = self.in_span[i] = 0
            elif in_span[i]:
                self.in_span[i] += 1
            elif forced[i] is not None:
                self.pos[i] += 1
                self.in_chunk[i] += 1

    def restrict(self, logits: torch.Tensor, in_span: Sequence[bool]) -> torch.Tensor:
        """logits (B, V) of a model step -> the forced rows' logits at -inf except: inside a span with text still to
        come, the codes and <|end_of_audio|> (the answer cannot end before its text); inside the last span, those
        and the stops; after it, <|begin_of_audio|> and the stops."""
        state = [0 if s and t is not None and p < len(t) else 1 if s else 2
                 for s, t, p in zip(in_span, self.texts, self.pos)]
        banned = self.banned[torch.tensor(state, device=self.device)]  # (B, V)
        return logits.masked_fill(self.rows[:, None] & banned, float("-inf"))


def check_forcing(lm, verify: bool = False, ratio: Sequence[int] | None = None) -> list[int]:
    """The interleave ratio text forcing will use on `lm` (`ratio`, else the checkpoint's stored one); ValueError
    when forcing cannot be honoured: verified decoding, a model without audio markers, no ratio known."""
    if verify:
        raise ValueError("force_text cannot be combined with verified decoding (verify=True): it checks every token "
                         "with the backbone; decode unverified (a named mode or a schedule)")
    if span_markers(lm) is None:
        raise ValueError("force_text needs a model whose tokenizer has <|begin_of_audio|> / <|end_of_audio|>: the "
                         "forced text goes into the text chunks of an interleaved answer")
    if ratio is None:
        ratio = stored_schedule(getattr(lm, "generation_config", None))
        if ratio is None:
            raise ValueError("force_text needs the interleave ratio of the answers: this checkpoint stores none "
                             "(mtp_inference_mode); give interleave_ratio, e.g. [1, 10, 4, 10] for Boost")
    chunk_sizes(ratio)  # a malformed ratio fails here
    return [int(r) for r in ratio]


def forcer_for(lm, texts: Sequence[Sequence[int] | None], ratio: Sequence[int] | None, verify: bool, rows: int,
               stop_ids: list[int]) -> TextForcer:
    """The `TextForcer` of a decode of `rows` rows; ValueError for what it cannot honour (`check_forcing`)."""
    ratio = check_forcing(lm, verify, ratio)
    if len(texts) != rows:
        raise ValueError(f"{len(texts)} force_text rows for {rows} prompt rows: give one (or None) per row")
    bb, av = lm.backbone, lm.backbone.audio_vocab
    begin, end = span_markers(lm)
    return TextForcer(texts, ratio, begin, end, (av.audio_offset, av.audio_end), stop_ids, bb.vocab_size,
                      min(len(bb.tokenizer), bb.vocab_size), bb.embed_tokens.weight.device)
