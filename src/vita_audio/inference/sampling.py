"""Token selection, identical for backbone and MCTP steps: greedy or sampling with transformers' processors.

    logits (B, V) -> repetition penalty -> [temperature -> top-k -> top-p] -> argmax or a seeded draw

`Sampling()` holds the reference's generation defaults (T 0.7, top-k 20, top-p 0.8, repetition penalty 1.05);
`Sampling.greedy()` is plain argmax. Draws use a `torch.Generator` owned by each generation, never the global RNG,
so a seed reproduces a generation and two interleaved generations do not disturb each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


@dataclass(frozen=True)
class Sampling:
    """How tokens are chosen. `do_sample=False` is greedy (the repetition penalty still applies when != 1)."""

    do_sample: bool = True
    temperature: float = 0.7
    top_k: int = 20
    top_p: float = 0.8
    repetition_penalty: float = 1.05
    seed: int | None = None

    @classmethod
    def greedy(cls) -> Sampling:
        return cls(do_sample=False, repetition_penalty=1.0)

    def __post_init__(self) -> None:
        if self.do_sample and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature} (use Sampling.greedy())")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0 or self.repetition_penalty <= 0:
            raise ValueError(f"top_k must be >= 0 and repetition_penalty > 0, got {self.top_k}, "
                             f"{self.repetition_penalty}")


class Sampler:
    """Applies a `Sampling` to logits; owns the random generator of one generation."""

    def __init__(self, sampling: Sampling | None, device: torch.device | str = "cpu") -> None:
        self.cfg = sampling or Sampling.greedy()
        processors = []
        if self.cfg.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(self.cfg.repetition_penalty))
        if self.cfg.do_sample:
            if self.cfg.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(self.cfg.temperature))
            if self.cfg.top_k > 0:
                processors.append(TopKLogitsWarper(self.cfg.top_k))
            if self.cfg.top_p < 1.0:
                processors.append(TopPLogitsWarper(self.cfg.top_p))
        self.processors = LogitsProcessorList(processors)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(self.cfg.seed if self.cfg.seed is not None else torch.seed())

    def scores(self, context: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """context (B, T) ids so far, logits (B, V) float -> processed scores (B, V)."""
        return self.processors(context, logits.float()) if len(self.processors) else logits.float()

    def probs(self, context: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The distribution a token is drawn from (B, V): one-hot on the argmax when greedy."""
        scores = self.scores(context, logits)
        if not self.cfg.do_sample:
            return torch.zeros_like(scores).scatter_(1, scores.argmax(-1, keepdim=True), 1.0)
        return scores.softmax(-1)

    def pick(self, context: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """One token per row (B,)."""
        scores = self.scores(context, logits)
        if not self.cfg.do_sample:
            return scores.argmax(-1)
        return self.draw(scores.softmax(-1))

    def draw(self, probs: torch.Tensor) -> torch.Tensor:
        """(B, V) probabilities -> (B,) a seeded draw."""
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(1)

    def uniform(self) -> float:
        return float(torch.rand((), generator=self.generator))
