"""Where each token of an answer goes: audio code, audio marker, stop, or text (one component for every consumer).

    answer ids --TokenRouter.push--> Routed("code", code=c)   -> the row's detokenizer session (speech out)
                                     Routed("marker")         <|begin_of_audio|> / <|end_of_audio|>: nothing to show
                                     Routed("stop")           the row is over (a stop id wins over any other kind)
                                     Routed("text", text=d)   d: the text this token completed ("" while a
                                                              character's bytes are still arriving)
    end of the answer --TokenRouter.finish()--> the text held back (bytes of a character that never completed)

`TextStream` turns text ids into text incrementally, at a cost per token bounded by the length of one character's
tokens (not the answer's length): it decodes a short window that starts one emitted chunk back, and emits what the
window's text adds to the decode of its first chunk once the window ends on a complete character (the rule of
`tokenizers.decoders.DecodeStream`, written on `tokenizer.decode` so that it serves any tokenizer). A byte-level
BPE splits a Chinese character or an emoji over several tokens: nothing is emitted until its last byte arrives, so
no U+FFFD reaches the client, and the emitted deltas concatenate to the offline decode of the same ids.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from vita_audio.model.vocab import AudioVocab

REPLACEMENT = "\ufffd"  # what decoding gives for the bytes of an incomplete UTF-8 sequence


class TextStream:
    """Incremental detokenisation of one row's text ids (special tokens are skipped, as `skip_special_tokens`).

    State: `window`, the ids of the last emitted chunk (`window[:read]`, decoding to `shown`) followed by the ids
    not emitted yet. A push decodes the window; when its text is longer than `shown` and does not end in an
    incomplete character, the new part is emitted and the window restarts at the chunk just emitted.
    """

    def __init__(self, tokenizer) -> None:
        self.tok = tokenizer
        self._special = set(getattr(tokenizer, "all_special_ids", ()))
        self.window: list[int] = []
        self.read = 0  # window[:read] is already emitted
        self.shown = ""  # decode(window[:read])
        self.pieces: list[str] = []  # every delta emitted

    @property
    def text(self) -> str:
        """All text emitted so far."""
        return "".join(self.pieces)

    def _decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True) if ids else ""

    def push(self, i: int) -> str:
        """Add one id; the text it completes ("" while a character is incomplete, or for a special token)."""
        if i in self._special:
            return ""
        self.window.append(int(i))
        text = self._decode(self.window)
        if len(text) <= len(self.shown) or text.endswith(REPLACEMENT):
            return ""
        return self._emit(text)

    def finish(self) -> str:
        """The text of ids still held back (an incomplete character at the end: it decodes with U+FFFD, as the
        offline decode does). Call once, after the last `push`."""
        text = self._decode(self.window)
        return self._emit(text) if len(text) > len(self.shown) else ""

    def _emit(self, text: str) -> str:
        # the window's text normally starts with `shown`; if the tokenizer's decode of the longer window rewrites
        # it (e.g. a clean-up rule), what was sent cannot be taken back: send what follows the common prefix
        start = len(self.shown) if text.startswith(self.shown) else len(os.path.commonprefix([self.shown, text]))
        delta = text[start:]
        self.window = self.window[self.read:]
        self.read = len(self.window)
        self.shown = self._decode(self.window)
        self.pieces.append(delta)
        return delta


@dataclass(frozen=True)
class Routed:
    """Where one answer token went (see the module docstring)."""

    kind: str  # "code" | "marker" | "stop" | "text"
    code: int | None = None  # kind "code": the audio code (token id - audio offset)
    text: str = ""  # kind "text": the text this token completed


class TokenRouter:
    """One row's answer, token by token. Holds every token (`tokens`, the stop included), the audio codes
    (`codes`) and the text (`text`; complete after `finish()`).

    Args:
        tokenizer: the model's text tokenizer (`lm.backbone.tokenizer`).
        audio_vocab: its audio vocabulary (`lm.backbone.audio_vocab`): the code range and the markers.
        stop_ids: ids that end the answer (`Decoder.stop_ids`).
    """

    def __init__(self, tokenizer, audio_vocab: AudioVocab, stop_ids: Iterable[int]) -> None:
        self.lo, self.hi = audio_vocab.audio_offset, audio_vocab.audio_end
        self.markers = {audio_vocab.begin_of_audio, audio_vocab.end_of_audio}
        self.stops = {int(i) for i in stop_ids}
        self.text_stream = TextStream(tokenizer)
        self.tokens: list[int] = []
        self.codes: list[int] = []
        self.stopped = False

    @property
    def text(self) -> str:
        return self.text_stream.text

    def push(self, tok: int) -> Routed:
        tok = int(tok)
        self.tokens.append(tok)
        if tok in self.stops:
            self.stopped = True
            return Routed("stop")
        if self.lo <= tok < self.hi:
            self.codes.append(tok - self.lo)
            return Routed("code", code=tok - self.lo)
        if tok in self.markers:
            return Routed("marker")
        return Routed("text", text=self.text_stream.push(tok))

    def finish(self) -> str:
        """The text held back at the end of the answer ("" almost always); emit it as a last text delta."""
        return self.text_stream.finish()
