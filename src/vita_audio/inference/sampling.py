"""Token selection, identical for backbone and MCTP steps: greedy or sampling with transformers' processors.

    logits (B, V) -> repetition penalty -> [temperature -> top-k -> top-p] -> argmax, or one draw per row

`Sampling()` holds the reference's generation defaults (T 0.7, top-k 20, top-p 0.8, repetition penalty 1.05);
`Sampling.greedy()` and `Sampling(do_sample=False)` are the same thing: argmax of the unpenalised distribution
(a penalty applies to greedy decoding only when one is asked for explicitly).

Randomness: every row owns a `torch.Generator` seeded with its own seed, so a row's draws depend on its seed and
its own logits only: a seeded prompt alone and the same prompt inside a batch (whatever the other rows and their
seeds) draw the same tokens. A row without a seed gets a fresh one from the operating system's entropy
(`torch.Generator.seed()` on the row's own generator); torch's global RNG is never read or reseeded, so calling
`generate` inside a training loop or a notebook leaves its random stream alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

SAMPLING_PENALTY = 1.05  # the reference's repetition penalty when sampling


@dataclass(frozen=True)
class Sampling:
    """How tokens are chosen.

    `do_sample=False` is greedy: argmax of the unpenalised distribution. `repetition_penalty=None` (the default)
    means 1.05 when sampling (the reference's default) and 1.0 (none) when greedy; give a number to penalise
    either way (`penalty` is the value in force). `seed` seeds every row of a generation (per-row seeds:
    `generate(..., seeds=[...])`); None = a fresh seed per row.
    """

    do_sample: bool = True
    temperature: float = 0.7
    top_k: int = 20
    top_p: float = 0.8
    repetition_penalty: float | None = None
    seed: int | None = None

    @classmethod
    def greedy(cls) -> Sampling:
        return cls(do_sample=False)

    @property
    def penalty(self) -> float:
        """The repetition penalty in force: the explicit one, else 1.05 when sampling and 1.0 when greedy."""
        if self.repetition_penalty is not None:
            return float(self.repetition_penalty)
        return SAMPLING_PENALTY if self.do_sample else 1.0

    def __post_init__(self) -> None:
        if self.do_sample and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature} (use Sampling.greedy())")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.repetition_penalty is not None and self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0 (or None for the default), got {self.repetition_penalty}")
        _check_seed(self.seed, "Sampling.seed")


def _check_seed(seed: object, name: str) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64):
        raise ValueError(f"{name} must be None or an integer in [0, 2**64), got {seed!r}")


class Sampler:
    """Applies a `Sampling` to logits; owns one random generator per row of one generation.

    Args:
        sampling: the rule (None = greedy).
        device: where the generators live (the logits' device).
        rows: batch size, when `seeds` is not given.
        seeds: one seed per row (None entries: `sampling.seed`, else fresh); overrides `rows`.
    """

    def __init__(self, sampling: Sampling | None, device: torch.device | str = "cpu", *, rows: int = 1,
                 seeds: Sequence[int | None] | None = None) -> None:
        self.cfg = sampling or Sampling.greedy()
        processors = []
        if self.cfg.penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(self.cfg.penalty))
        if self.cfg.do_sample:
            if self.cfg.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(self.cfg.temperature))
            if self.cfg.top_k > 0:
                processors.append(TopKLogitsWarper(self.cfg.top_k))
            if self.cfg.top_p < 1.0:
                processors.append(TopPLogitsWarper(self.cfg.top_p))
        self.processors = LogitsProcessorList(processors)
        if seeds is None:
            seeds = [None] * rows
        for i, s in enumerate(seeds):
            _check_seed(s, f"seeds[{i}]")
        self.generators = [torch.Generator(device=device) for _ in seeds]
        self.seeds: list[int] = []  # the seed each row uses (fresh ones included), to reproduce a generation
        for g, s in zip(self.generators, seeds):
            s = s if s is not None else self.cfg.seed
            if s is None:
                s = g.seed()  # fresh entropy for this generator only
            else:
                g.manual_seed(s)
            self.seeds.append(s)

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
        """(B, V) probabilities -> (B,): row i drawn with row i's generator (its draws ignore the other rows)."""
        if probs.shape[0] != len(self.generators):
            raise ValueError(f"{probs.shape[0]} rows of probabilities for a sampler of {len(self.generators)} rows")
        return torch.cat([torch.multinomial(p[None], 1, generator=g)[:, 0] for p, g in zip(probs, self.generators)])

    def uniform(self, row: int = 0) -> float:
        """One U(0, 1) draw from row `row`'s generator (speculative acceptance)."""
        return float(torch.rand((), generator=self.generators[row], device=self.generators[row].device))
