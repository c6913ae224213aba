"""Output heads for decoding: the full LM head, or a row slice of it for MCTP steps that emit audio.

An MCTP step in Boost emits the audio span of an interleaved chunk (`<|begin_of_audio|>`, codes,
`<|end_of_audio|>`), so its logits over the whole vocabulary are mostly wasted work: at Qwen2.5 size the head has
168k rows against ~16k audio rows. Inside an audio span (after `<|begin_of_audio|>`, before `<|end_of_audio|>`)
only codes, the closing marker or a stop can follow, so there `Heads.restricted` computes the logits of the audio
codes, the two markers and the stop ids only and leaves every other entry at -inf; under greedy decoding this
equals the full head whenever the full head picks one of those tokens. Outside a span an MCTP step uses the full
head (a schedule may ask the modules for text, e.g. Turbo on a Boost-trained checkpoint).

Rows past the tokenizer (the embedding is padded to a multiple of 8) are never produced by either head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vita_audio.model.lm import VitaAudioLM


class Heads:
    """The logits functions of one model for one generation (the head slice is built once)."""

    def __init__(self, lm: VitaAudioLM, stop_ids: Sequence[int] = (), restrict_mctp: bool | str = True) -> None:
        """`restrict_mctp`: True = inside audio spans; "always" = every MCTP step (benchmarks of random-weight
        models, which never open a span); False = never."""
        if restrict_mctp not in (True, False, "always"):
            raise ValueError(f"restrict_mctp must be True, False or 'always', got {restrict_mctp!r}")
        bb = lm.backbone
        self.head = bb.lm_head
        self.vocab_size = bb.vocab_size
        self.valid = min(len(bb.tokenizer), self.vocab_size)  # ids >= valid are padding rows
        self.restrict_mctp = restrict_mctp
        av = bb.audio_vocab
        # the codes are a contiguous row range: used as a view of the head (no copy of its ~16k rows per
        # generation); the markers and stop ids are a handful of rows, copied once
        self.codes = (av.audio_offset, min(av.audio_end, self.valid))
        self.begin, self.end = av.begin_of_audio, av.end_of_audio
        others = {av.begin_of_audio, av.end_of_audio, *stop_ids}
        self.other_ids = torch.tensor(sorted(i for i in others if 0 <= i < self.valid
                                             and not self.codes[0] <= i < self.codes[1]),
                                      dtype=torch.long, device=self.head.weight.device)
        self.audio_ids = torch.cat([torch.arange(*self.codes, device=self.other_ids.device), self.other_ids]).sort()[0]
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

    def mctp(self, h: torch.Tensor, in_span: torch.Tensor) -> torch.Tensor:
        """An MCTP step's logits: restricted when every row is inside an audio span (where only codes,
        <|end_of_audio|> or a stop can follow), else the full head (e.g. Turbo asking a Boost-trained model for
        text, or the step that opens a span)."""
        if self.restrict_mctp == "always":
            return self.restricted(h)
        if not self.restrict_mctp or not bool(in_span.any()):
            return self.full(h)
        if bool(in_span.all()):
            return self.restricted(h)
        logits = self.full(h)  # a batch with rows in and out of a span: mask the rows inside one
        outside = torch.ones(self.vocab_size, dtype=torch.bool, device=logits.device)
        outside[self.audio_ids] = False
        logits[in_span[:, None] & outside[None, :]] = float("-inf")
        return logits
