"""How the main loss and the MCTP module losses combine (the `model/loss` config group).

    L = main_weight * L_main + mctp_weight * sum_k(a_k * CE_k) / sum_k(a_k)

with a_k = 1 (the reference: a plain mean), `module_weights` given explicitly, or `decay ** k`.
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

    def combine(self, main: torch.Tensor | None, modules: list[torch.Tensor]) -> torch.Tensor:
        """main: scalar or None (frozen backbone: no main loss at all); modules: K scalars."""
        total = torch.zeros(())
        if main is not None:
            total = self.main_weight * main
        if modules:
            a = self.weights(len(modules))
            mctp = sum(w * m for w, m in zip(a, modules)) / sum(a)
            total = total.to(mctp.device) + self.mctp_weight * mctp
        return total
