"""Output heads for decoding: the full LM head, or a row slice of it for MCTP steps that emit audio.

An MCTP step in Boost / Turbo emits the audio span of an interleaved chunk (`<|begin_of_audio|>`, codes,
`<|end_of_audio|>`), so its logits over the whole vocabulary are mostly wasted work: at Qwen2.5 size the head has
168k rows against ~16k audio rows. `Heads.restricted` computes the logits of the audio codes, the two markers and
the stop ids only and leaves every other entry at -inf; under greedy decoding this equals the full head whenever
the full head picks one of those tokens.

Rows past the tokenizer (the embedding is padded to a multiple of 8) are never produced by either head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vita_audio.model.lm import VitaAudioLM


class Heads:
    """The logits functions of one model for one generation (the head slice is built once)."""

    def __init__(self, lm: VitaAudioLM, stop_ids: Sequence[int] = (), restrict_mctp: bool = True) -> None:
        bb = lm.backbone
        self.head = bb.lm_head
        self.vocab_size = bb.vocab_size
        self.valid = min(len(bb.tokenizer), self.vocab_size)  # ids >= valid are padding rows
        self.restrict_mctp = restrict_mctp
        av = bb.audio_vocab
        # the codes are a contiguous row range: used as a view of the head (no copy of its ~16k rows per
        # generation); the markers and stop ids are a handful of rows, copied once
        self.codes = (av.audio_offset, min(av.audio_end, self.valid))
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

    def mctp(self, h: torch.Tensor) -> torch.Tensor:
        return self.restricted(h) if self.restrict_mctp else self.full(h)
