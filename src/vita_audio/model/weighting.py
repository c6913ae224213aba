"""How the main loss and the MCTP module losses combine (the `model/loss` config group).

    L = main_weight * L_main + mctp_weight * sum_k(a_k * CE_k) / sum_k(a_k)

with a_k = 1 (the reference: a plain mean), `module_weights` given explicitly, or `decay ** k`. A module
with no supervised target in a batch (e.g. `mctp_tokens=audio` on a text-only batch) is left out of the mean
(a_k = 0 for that batch) instead of counting as a zero loss.
`mctp_tokens` picks which supervised targets get MCTP loss: "all" (reference) or "audio" (audio codes and the
audio markers only).
"""

from __future__ import annotations

from typing import Literal

import torch


class LossWeighting:
    def __init__(
        self,
        main_weight: float = 1.0,
        mctp_weight: float = 1.0,
        module_weights: list[float] | None = None,
        decay: float | None = None,
        mctp_tokens: Literal["all", "audio"] = "all",
    ) -> None:
        if module_weights is not None and decay is not None:
            raise ValueError("give either module_weights or decay, not both")
        if mctp_tokens not in ("all", "audio"):
            raise ValueError(f"mctp_tokens must be 'all' or 'audio', got {mctp_tokens!r}")
        if decay is not None and not 0 < decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        self.main_weight, self.mctp_weight = main_weight, mctp_weight
        self.module_weights, self.decay, self.mctp_tokens = module_weights, decay, mctp_tokens

    def weights(self, num_modules: int) -> list[float]:
        if self.module_weights is not None:
            if len(self.module_weights) < num_modules:
                raise ValueError(
                    f"module_weights has {len(self.module_weights)} entries for {num_modules} MCTP modules"
                )
            return list(self.module_weights[:num_modules])
        if self.decay is not None:
            return [self.decay**k for k in range(num_modules)]
        return [1.0] * num_modules

    def combine(
        self, main: torch.Tensor | None, modules: list[torch.Tensor], counts: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """main: scalar or None (frozen backbone: no main loss at all); modules: K scalars (mean CE of each module);
        counts: K supervised-target counts. A module with no supervised target in the batch is left out of the
        mean (its a_k counts as 0); its zero-valued loss stays in the sum, so gradients still reach every module.
        """
        total = torch.zeros(())
        if main is not None:
            total = self.main_weight * main
        if modules:
            a = torch.tensor(self.weights(len(modules)), device=modules[0].device)  # (K,)
            losses = torch.stack([m.float() for m in modules])  # (K,)
            if counts is not None:
                a = a * (torch.stack([c.to(a.device) for c in counts]) > 0)  # (K,) empty modules weigh 0
            denom = a.sum()
            # (a * losses) keeps every module in the graph, empty ones (a_k = 0) included
            mctp = (a * losses).sum() / torch.where(denom > 0, denom, torch.ones_like(denom))
            total = total.to(mctp.device) + self.mctp_weight * mctp
        return total
