"""Output heads for decoding: the full LM head, or a row slice of it for MCTP steps that emit audio.

An MCTP step in Boost emits the audio span of an interleaved chunk (`<|begin_of_audio|>`, codes,
`<|end_of_audio|>`), so its logits over the whole vocabulary are mostly wasted work: at Qwen2.5 size the head has
168k rows against ~16k audio rows. Inside an audio span (after `<|begin_of_audio|>`, before `<|end_of_audio|>`)
only codes, the closing marker or a stop can follow, so there `Heads.restricted` computes the logits of the audio
codes, the two markers and the stop ids only and leaves every other entry at -inf; under greedy decoding this
equals the full head whenever the full head picks one of those tokens. Outside a span an MCTP step uses the full
head (a schedule may ask the modules for text, e.g. Turbo on a Boost-trained checkpoint).

Rows past the tokenizer (the embedding is padded to a multiple of 8) are never produced by either head.
`span_markers` says whether a model can tell audio spans at all (audio-only drafting needs it, `schedule.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vita_audio.model.lm import VitaAudioLM


def span_markers(lm: VitaAudioLM) -> tuple[int, int] | None:
    """(<|begin_of_audio|>, <|end_of_audio|>) ids of the model's tokenizer, or None when it has no such markers
    with a row in the model's head (then no decoder can tell where an audio span is)."""
    av = getattr(lm.backbone, "audio_vocab", None)
    ids = (getattr(av, "begin_of_audio", None), getattr(av, "end_of_audio", None))
    valid = min(len(lm.backbone.tokenizer), lm.backbone.vocab_size)
    return ids if all(isinstance(i, int) and 0 <= i < valid for i in ids) else None


def check_span_drafting(lm: VitaAudioLM, drafting: str, schedule: Sequence[int], verify: bool = False) -> None:
    """ValueError when `drafting="audio"` cannot be honoured: a schedule with MCTP steps (unverified) on a model
    whose tokenizer has no audio markers."""
    if drafting == "audio" and not verify and max(schedule[1::2]) > 0 and span_markers(lm) is None:
        raise ValueError("drafting='audio' runs MCTP steps inside audio spans only, but this model's tokenizer has "
                         "no <|begin_of_audio|> / <|end_of_audio|> with a row in its head: decode with "
                         "drafting='all' (MCTP steps emit any token) or schedule='vanilla'")


class Heads:
    """The logits functions of one model for one generation (the head slice is built once, when used)."""

    def __init__(self, lm: VitaAudioLM, stop_ids: Sequence[int] = (), restrict_mctp: bool | str = True) -> None:
        """`restrict_mctp`: True = inside audio spans; "always" = every MCTP step (benchmarks of random-weight
        models, which never open a span); False = never (no slice is built)."""
        if restrict_mctp not in (True, False, "always"):
            raise ValueError(f"restrict_mctp must be True, False or 'always', got {restrict_mctp!r}")
        bb = lm.backbone
        self.head = bb.lm_head
        self.vocab_size = bb.vocab_size
        self.valid = min(len(bb.tokenizer), self.vocab_size)  # ids >= valid are padding rows
        self.restrict_mctp = restrict_mctp
        av = bb.audio_vocab
        self.begin, self.end = av.begin_of_audio, av.end_of_audio
        if restrict_mctp:
            self._build_slice(av.audio_offset, av.audio_end, stop_ids, len(bb.tokenizer))

    def _build_slice(self, lo: int, hi: int, stop_ids: Sequence[int], n_tokenizer: int) -> None:
        """The audio-only slice of the head: the codes are a contiguous row range, used as a view of the head (no
        copy of its ~16k rows per generation); the markers and stop ids are a handful of rows, copied once."""
        if not (0 <= lo < hi <= self.valid and 0 <= self.begin < self.valid and 0 <= self.end < self.valid):
            raise ValueError(
                f"restricted MCTP heads need the audio vocabulary inside the model's head: audio codes {lo}..{hi - 1}, "
                f"<|begin_of_audio|> {self.begin}, <|end_of_audio|> {self.end}, but only ids < {self.valid} have a "
                f"row (tokenizer {n_tokenizer} entries, head {self.vocab_size} rows): the tokenizer does not match "
                "the checkpoint; use the checkpoint's own tokenizer, or restrict_mctp=False")
        self.codes = (lo, hi)
        device = self.head.weight.device
        others = {self.begin, self.end, *stop_ids}  # stop ids past the vocabulary are never produced: left out
        self.other_ids = torch.tensor(sorted(i for i in others if 0 <= i < self.valid and not lo <= i < hi),
                                      dtype=torch.long, device=device)
        self._outside = torch.ones(self.vocab_size, dtype=torch.bool, device=device)  # (V,) not a span token
        self._outside[lo:hi] = False
        self._outside[self.other_ids] = False
        self._other_weight = self.head.weight.detach()[self.other_ids]  # (R, H), R = markers + stops
        bias = getattr(self.head, "bias", None)
        self._other_bias = None if bias is None else bias.detach()[self.other_ids]

    def full(self, h: torch.Tensor) -> torch.Tensor:
        """h (..., H) -> logits (..., V), padding rows at -inf."""
        logits = self.head(h).float()
        if self.valid < self.vocab_size:
            logits[..., self.valid:] = float("-inf")
        return logits

    def restricted(self, h: torch.Tensor) -> torch.Tensor:
        """h (B, H) -> logits (B, V), finite only on the audio span tokens and the stop ids."""
        if not self.restrict_mctp:
            raise RuntimeError("Heads(restrict_mctp=False) has no audio-only head")
        lo, hi = self.codes
        weight, bias = self.head.weight.detach(), getattr(self.head, "bias", None)
        codes = torch.nn.functional.linear(h, weight[lo:hi], None if bias is None else bias.detach()[lo:hi])
        others = torch.nn.functional.linear(h, self._other_weight, self._other_bias)
        out = torch.full((*h.shape[:-1], self.vocab_size), float("-inf"), dtype=torch.float32, device=h.device)
        out[..., lo:hi] = codes.float()
        out[..., self.other_ids] = others.float()
        return out

    def span_update(self, in_span: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(B,) bool "inside an audio span" after emitting `tokens` (B,): opened by <|begin_of_audio|>, closed by
        <|end_of_audio|>."""
        return (in_span | (tokens == self.begin)) & (tokens != self.end)

    def mctp(self, h: torch.Tensor, in_span: torch.Tensor, active: torch.Tensor | None = None) -> torch.Tensor:
        """An MCTP step's logits (B, V) from h (B, H), `in_span` (B,) the span state of every row of the batch.

        Restricted when every live row (`active` (B,) bool; None = all) is inside an audio span (where only codes,
        <|end_of_audio|> or a stop can follow), the full head when none is (e.g. Turbo asking a Boost-trained
        model for text, or the step that opens a span); with live rows in and out of spans, the full head with
        the non-span tokens of the in-span rows at -inf. Rows that are not live are ignored by the caller.
        """
        if self.restrict_mctp == "always":
            return self.restricted(h)
        if not self.restrict_mctp:
            return self.full(h)
        if in_span.shape != h.shape[:1] or (active is not None and active.shape != in_span.shape):
            raise ValueError(f"span state {tuple(in_span.shape)} and live rows "
                             f"{None if active is None else tuple(active.shape)} must both be ({h.shape[0]},): "
                             "one entry per row of the batch")
        live = in_span if active is None else in_span[active]
        if not bool(live.any()):
            return self.full(h)
        if bool(live.all()):
            return self.restricted(h)
        logits = self.full(h)  # live rows in and out of a span: mask the rows inside one
        logits[in_span[:, None] & self._outside[None, :]] = float("-inf")
        return logits
