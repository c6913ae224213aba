"""The LightningModule of all four training stages.

A stage is a composition, not a subclass: the backbone, the MCTP stack (or none), the loss weighting, the
freeze rules, the optimiser groups and the MCTP initialisation are all handed in from Hydra config groups
(`conf/model/stage{1..4}.yaml`). The module owns losses, metrics, logging and optimiser groups; the math
lives in `vita_audio.model`.
"""

from __future__ import annotations

import logging
from functools import partial
from collections.abc import Callable
from typing import Any, Literal

import lightning as L
import torch

from vita_audio.model.backbone import Backbone
from vita_audio.model.freeze import apply_freeze
from vita_audio.model.lm import VitaAudioLM
from vita_audio.model.loss import chunked_cross_entropy, shifted_targets
from vita_audio.model.mctp import MCTPStack
from vita_audio.model.mctp_loss import mctp_losses
from vita_audio.model.weighting import LossWeighting
from vita_audio.training.init import initialize_from_checkpoint
from vita_audio.training.optim import param_groups

log = logging.getLogger(__name__)

MCTPInit = Literal["none", "copy_last_layer", "clone_first"]


class SpeechLMModule(L.LightningModule):
    """Next-token training of a speech LM with optional MCTP modules.

    Args:
        backbone: the LLM with the audio vocabulary.
        optimizer: a partial optimiser (lr, weight_decay, betas, eps bound); parameter groups are built here.
        scheduler: a partial `(optimizer, total_steps) -> LRScheduler`, stepped every optimiser step.
        mctp: a factory `backbone -> MCTPStack` (a partial of `MCTPStack.for_backbone`), or None (stage 1, vanilla).
        loss: how the main and module losses combine.
        freeze: `{"frozen": [regex...], "trainable": [regex...] | None}` over names under `lm.` (e.g. `^backbone\\.`).
        lr_scales: `{regex: factor}` LR multipliers (stage 4: `{"^mctp\\.": 10}`).
        mctp_init: applied after loading the predecessor: copy the backbone's last layer into module 0 (stage 2),
            clone module 0 into every module (stage 3), or nothing.
        ce_chunk_rows: rows per chunk of the chunked cross-entropy (memory vs speed).
    """

    def __init__(
        self,
        backbone: Backbone,
        optimizer: partial,
        scheduler: partial | None = None,
        mctp: Callable[[Backbone], MCTPStack] | None = None,
        loss: LossWeighting | None = None,
        freeze: dict[str, Any] | None = None,
        lr_scales: dict[str, float] | None = None,
        mctp_init: MCTPInit = "none",
        ce_chunk_rows: int = 1024,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False, ignore=["backbone", "optimizer", "scheduler", "mctp", "loss"])
        if mctp_init != "none" and mctp is None:
            raise ValueError(f"mctp_init={mctp_init!r} needs an MCTP stack (model.mctp is null)")
        self.lm = VitaAudioLM(backbone, None if mctp is None else mctp(backbone))
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.weighting = loss or LossWeighting()
        self.freeze_rules = dict(freeze or {})
        self.lr_scales, self.mctp_init, self.ce_chunk_rows = dict(lr_scales or {}), mctp_init, ce_chunk_rows
        self.freeze_report = apply_freeze(self.lm, self.freeze_rules.get("frozen"), self.freeze_rules.get("trainable"))

    # -- set-up ---------------------------------------------------------------------------------------------
    @property
    def backbone(self) -> Backbone:
        return self.lm.backbone

    @property
    def num_mctp(self) -> int:
        return 0 if self.lm.mctp is None else self.lm.mctp.num_modules

    @property
    def backbone_trainable(self) -> bool:
        return any(p.requires_grad for p in self.lm.backbone.parameters())

    def initialize(self, init_from: str | None, predecessor: str | None = None) -> None:
        """Load a predecessor stage's weights (if given), then apply `mctp_init`. Not used when resuming.
        `predecessor` (the experiment that produces `init_from`) makes a missing checkpoint's error actionable."""
        if init_from:
            initialize_from_checkpoint(self, init_from, self.mctp_init != "none", predecessor)
        if self.mctp_init == "copy_last_layer":
            self.lm.mctp.init_module_from_layer(0, self.backbone.layers[-1])
        elif self.mctp_init == "clone_first":
            self.lm.mctp.clone_first_module()

    def on_fit_start(self) -> None:
        log.info(str(self.freeze_report))
        if not self.backbone_trainable and self.num_mctp == 0:
            raise ValueError("nothing to train: the backbone is frozen and there is no MCTP stack")

    def train(self, mode: bool = True) -> SpeechLMModule:
        """A frozen LLM stays in eval mode (no dropout) even while the MCTP modules train."""
        super().train(mode)
        if mode and not self.backbone_trainable:
            self.lm.backbone.eval()
        return self

    # -- losses ---------------------------------------------------------------------------------------------
    def compute_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """
        batch ─► backbone ─► h0 (B,T,H) ─► main CE of lm_head(h0[t]) vs x[t+1]   (skipped when frozen)
                               └─► MCTP levels h1..hN (B,T-k-1,H) ─► CE_k vs x[t+k+2]
        loss = weighting.combine(main, [CE_k])
        """
        input_ids, labels = batch["input_ids"], batch["labels"]  # (B, T)
        position_ids, sample_ids = batch.get("position_ids"), batch.get("sample_ids")
        train_backbone = self.backbone_trainable
        h0, levels = self.lm.hidden_states(input_ids, position_ids, sample_ids, backbone_grad=train_backbone)
        weight = self.backbone.lm_head.weight  # (V, H)
        out: dict[str, torch.Tensor] = {}
        main = None
        if train_backbone:
            targets = shifted_targets(labels, 1, sample_ids)  # (B, T-1)
            H = h0.shape[-1]
            rows = h0[:, :-1].reshape(-1, H)  # (B*(T-1), H): row t predicts x[t+1]
            s, n, c = chunked_cross_entropy(rows, weight, targets.reshape(-1), self.ce_chunk_rows)  # targets (B*(T-1),)
            main = s / n.clamp(min=1)
            out["loss_main"], out["acc_main"] = main, c.float() / n.clamp(min=1)
            out["supervised_tokens"] = n
        module_means = []
        if levels:
            token_filter = self._audio_targets if self.weighting.mctp_tokens == "audio" else None
            stats = mctp_losses(levels, labels, sample_ids, weight, self.ce_chunk_rows, token_filter)
            for k, (s, n, c) in enumerate(stats):
                m = s / n.clamp(min=1)
                module_means.append(m)
                out[f"loss_mctp_{k}"], out[f"acc_mctp_{k}"] = m, c.float() / n.clamp(min=1)
        out["loss"] = self.weighting.combine(main, module_means)
        return out

    def _audio_targets(self, ids: torch.Tensor) -> torch.Tensor:
        """True for audio codes and the audio markers (`loss.mctp_tokens=audio`)."""
        v = self.backbone.audio_vocab
        return v.is_audio(ids) | (ids == v.begin_of_audio) | (ids == v.end_of_audio)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.compute_losses(batch)
        B = batch["input_ids"].shape[0]
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=B)
        self.log_dict({f"train/{k}": v for k, v in out.items() if k != "loss" and k != "supervised_tokens"},
                      batch_size=B)
        self.log("lr", self.optimizers().param_groups[0]["lr"], prog_bar=True, batch_size=B)
        return out["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self.compute_losses(batch)
        B = batch["input_ids"].shape[0]
        self.log("val/loss", out["loss"], prog_bar=True, batch_size=B, sync_dist=True)
        self.log_dict({f"val/{k}": v for k, v in out.items() if k not in ("loss", "supervised_tokens")},
                      batch_size=B, sync_dist=True)

    # -- optimisation ---------------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        kw = self.optimizer_factory.keywords  # lr and weight_decay are bound in conf/model/optimizer/*.yaml
        groups = param_groups(self.lm.named_parameters(), kw["lr"], kw["weight_decay"], self.lr_scales)
        for g in groups:
            log.info("optimiser group: lr=%.3g wd=%.3g params=%d", g["lr"], g["weight_decay"], len(g["params"]))
            g.pop("names")
        optimizer = self.optimizer_factory(groups)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=max(total, 1))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
