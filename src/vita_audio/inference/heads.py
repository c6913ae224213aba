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
        ids = [av.begin_of_audio, av.end_of_audio, *range(av.audio_offset, av.audio_end), *stop_ids]
        self.audio_ids = torch.tensor(sorted(set(i for i in ids if 0 <= i < self.valid)),
                                      device=self.head.weight.device)
        self._weight = self.head.weight.detach()[self.audio_ids]  # (R, H), one copy per generation
        bias = getattr(self.head, "bias", None)
        self._bias = None if bias is None else bias.detach()[self.audio_ids]

    def full(self, h: torch.Tensor) -> torch.Tensor:
        """h (..., H) -> logits (..., V), padding rows at -inf."""
        logits = self.head(h).float()
        if self.valid < self.vocab_size:
            logits[..., self.valid:] = float("-inf")
        return logits

    def restricted(self, h: torch.Tensor) -> torch.Tensor:
        """h (B, H) -> logits (B, V), finite only on the audio span tokens and the stop ids."""
        part = torch.nn.functional.linear(h, self._weight, self._bias).float()  # (B, R)
        out = torch.full((*h.shape[:-1], self.vocab_size), float("-inf"), dtype=part.dtype, device=part.device)
        out[..., self.audio_ids] = part
        return out

    def mctp(self, h: torch.Tensor) -> torch.Tensor:
        return self.restricted(h) if self.restrict_mctp else self.full(h)
