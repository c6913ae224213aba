"""The LightningModule of all four training stages.

A stage is a composition, not a subclass: the backbone, the MCTP stack (or none), the loss weighting, the
freeze rules, the optimiser groups and the MCTP initialisation are all handed in from Hydra config groups
(`conf/model/stage{1..4}.yaml`). The module owns losses, metrics, logging and optimiser groups; the math
lives in `vita_audio.model`.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from functools import partial
from typing import Any, Literal

import lightning as L
import torch

from vita_audio.checkpoint.codec import codec_record
from vita_audio.checkpoint.record import KEY as RECORD_KEY
from vita_audio.checkpoint.record import tokenizer_files, training_record
from vita_audio.model.backbone import Backbone
from vita_audio.model.freeze import FreezeReport, apply_freeze
from vita_audio.model.lm import VitaAudioLM
from vita_audio.model.lora import BackboneLoRA, LoRAReport, trainable_parameter_count
from vita_audio.model.loss import chunked_cross_entropy, shifted_targets
from vita_audio.model.mctp import MCTPStack
from vita_audio.model.mctp_loss import mctp_losses
from vita_audio.model.weighting import LossWeighting
from vita_audio.training.init import initialize_from_checkpoint
from vita_audio.training.metrics import HeadLosses
from vita_audio.training.optim import param_groups

log = logging.getLogger(__name__)

MCTPInit = Literal["none", "copy_last_layer", "clone_first"]
Stats = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (sum of CE, supervised targets, correct) of one head
MODULE0 = re.compile(r"^lm\.mctp\.(layers|embed_norms|hidden_norms|projs)\.0\.")


class _DetachedParams(torch.nn.Module):
    """Runs `module` with its parameters detached: the output depends on them, no gradient reaches them."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.inner = [module]  # a list: not registered as a submodule (no second owner of its parameters)

    def forward(self, *args):
        module = self.inner[0]
        params = {n: p.detach() for n, p in module.named_parameters()}
        return torch.func.functional_call(module, params, args)


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
        mctp_grad_into_backbone: whether the MCTP losses' gradients reach the parts shared with the backbone
            (the backbone layers through h^0, the token embedding, the final norm and the LM head) when those
            train (stage 4). True = the reference (one joint loss, everything gets the MCTP gradient); False =
            the MCTP losses train the MCTP modules only and the shared parts learn from the main loss alone.
        lora: LoRA adapters on the backbone (`model/lora=backbone`), applied after the freeze rules: the backbone's
            own weights freeze, its adapters and audio-token rows train, the MCTP stack keeps its freeze rules.
            None (or an empty node, `model/lora=none`) = no adapters.

    Metrics (`split/name`, token-weighted means; module k = the k-th MCTP module, predicting x[t+k+2]):
        train/loss            the objective this stage optimises: main_weight * L_main + mctp_weight * the
                              weighted mean of the module CEs; without the main term when the backbone is frozen
                              (stages 2 and 3: it is a constant there and its logits are never computed)
        train/loss_main, train/loss_mctp_{k}, train/acc_*   per step, heads with supervised targets only
        val/loss              main_weight * L_main + mctp_weight * weighted mean of the module CEs, in every
                              stage (the main head is evaluated under no_grad even when frozen), over the whole
                              validation set: the same quantity in stages 1-4
        val/loss_main         CE of the main head (next token), mean over all supervised validation tokens
        val/loss_mctp_{k}     CE of MCTP module k, mean over all its supervised validation targets
        val/acc_main, val/acc_mctp_{k}   top-1 accuracy over the same tokens
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
        mctp_grad_into_backbone: bool = True,
        lora: BackboneLoRA | None = None,
        audio_encoder: torch.nn.Module | None = None,
        audio_adapter: Callable | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False, ignore=["backbone", "optimizer", "scheduler", "mctp", "loss", "lora",
                                                          "audio_encoder", "audio_adapter"])
        if mctp_init != "none" and mctp is None:
            raise ValueError(f"mctp_init={mctp_init!r} needs an MCTP stack (model.mctp is null)")
        # Plus variants: a frozen continuous encoder + an adapter factory (encoder_dim, hidden) (model.lm docs)
        self.lm = VitaAudioLM(backbone, None if mctp is None else mctp(backbone), audio_encoder, audio_adapter)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.weighting = loss or LossWeighting()
        self.freeze_rules = dict(freeze or {})
        self.lr_scales, self.mctp_init, self.ce_chunk_rows = dict(lr_scales or {}), mctp_init, ce_chunk_rows
        self.mctp_grad_into_backbone = mctp_grad_into_backbone
        self.val_heads = HeadLosses(1 + self.lm.num_mctp_modules)  # one metric object for the validation split
        self.freeze_report = apply_freeze(self.lm, self.freeze_rules.get("frozen"), self.freeze_rules.get("trainable"))
        self.lora_report: LoRAReport | None = None
        if lora:
            if not self.backbone_trainable:
                raise ValueError("model/lora=backbone adapts the backbone, but this stage's freeze rules freeze it "
                                 "(stages 2 and 3 train MCTP modules only): use model/lora=none here")
            self.lora_report = lora.apply(self.lm)
            total = sum(p.numel() for p in self.lm.parameters())
            self.freeze_report = FreezeReport(trainable_parameter_count(self.lm), total, ())
            log.info("%s; %s", self.lora_report, self.freeze_report)
        self.publish_id: str | None = None  # set by PublishStage while it writes final.ckpt / final.safetensors
        self._tokenizer_files: dict | None = None

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
        loaded: set[str] = set()
        if init_from:
            loaded = initialize_from_checkpoint(self, init_from, self.mctp_init != "none", predecessor)
        if self.mctp_init == "copy_last_layer":
            self.lm.mctp.init_module_from_layer(0, self.backbone.layers[-1])
        elif self.mctp_init == "clone_first":
            module0 = [k for k in self.state_dict() if MODULE0.match(k)]
            missing = [k for k in module0 if k not in loaded]
            if missing:
                source = f"checkpoint {init_from!r} holds no trained MCTP module 0 ({len(missing)} of its " \
                    f"{len(module0)} tensors missing, e.g. {missing[0]}; a stage-1 checkpoint?)" if init_from \
                    else "no init_from was given"
                how = f"python train.py +experiment={predecessor}" if predecessor else "the stage-2 experiment"
                raise ValueError(
                    f"mctp_init=clone_first (stage 3) copies a trained MCTP module 0 into every module, but {source}. "
                    f"Train stage 2 first ({how}) and start from its final.ckpt."
                )
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

    # -- what checkpoints store beside the weights ----------------------------------------------------------
    def audio_codec(self) -> dict[str, Any] | None:
        """The codec of the training codes (`checkpoint.codec`): the config's `audio` group, and the identity of
        the tokenizer that filled the data's token cache when the data module knows it."""
        audio = (self.hparams.get("config") or {}).get("audio")
        if not audio:
            return None
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        return codec_record(audio.get("name"), self.backbone.audio_vocab.codebook_size, audio.get("frame_rate"),
                            getattr(datamodule, "audio_identity", None))

    def checkpoint_record(self) -> dict[str, Any]:
        """What rebuilds this model from a checkpoint alone (`checkpoint.record`): the backbone's HF config, the
        extended tokenizer (packed once), the Plus encoder's config, the codec, the publish id."""
        if self._tokenizer_files is None:
            self._tokenizer_files = tokenizer_files(self.backbone.tokenizer)
        record = training_record(self.lm, self.audio_codec(), self._tokenizer_files)
        if self.publish_id is not None:
            record["publish_id"] = self.publish_id
        return record

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[RECORD_KEY] = self.checkpoint_record()

    # -- losses ---------------------------------------------------------------------------------------------
    def _hidden_states(self, batch: dict[str, torch.Tensor], backbone_grad: bool):
        input_ids, position_ids, sample_ids = batch["input_ids"], batch.get("position_ids"), batch.get("sample_ids")
        feats = batch.get("audio_features")  # (N, D) Plus: encoder frames of the placeholder positions
        if self.mctp_grad_into_backbone or not backbone_grad or self.lm.mctp is None:
            return self.lm.hidden_states(input_ids, position_ids, sample_ids, backbone_grad=backbone_grad,
                                         audio_features=feats)
        # the MCTP cascade on detached shared inputs: h^0, E(x) and the final norm's weight
        bb = self.backbone
        embeds = self.lm.input_embeddings(input_ids, feats)  # (B, T, H)
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        h0 = self.lm.backbone_hidden(embeds, position_ids, sample_ids)  # (B, T, H)
        levels = self.lm.mctp(
            h0.detach(), input_ids, position_ids, sample_ids, embed_tokens=bb.embed_tokens,
            final_norm=_DetachedParams(bb.final_norm), rotary_emb=bb.rotary_emb,
            inputs_embeds=embeds.detach(),  # (B, T, H)
        )
        return h0, levels

    def head_stats(self, batch: dict[str, torch.Tensor], with_main: bool = False) -> tuple[Stats | None, list[Stats]]:
        """(main head stats or None, [stats of MCTP module k]); each (sum of CE, supervised targets, correct).

        The main head runs when the backbone trains, or with `with_main` (validation: under no_grad when frozen).
        """
        labels, sample_ids = batch["labels"], batch.get("sample_ids")  # (B, T)
        train_backbone = self.backbone_trainable
        h0, levels = self._hidden_states(batch, train_backbone)
        weight = self.backbone.lm_head.weight  # (V, H)
        main = None
        if train_backbone or with_main:
            with contextlib.nullcontext() if train_backbone else torch.no_grad():
                targets = shifted_targets(labels, 1, sample_ids)  # (B, T-1)
                rows = h0[:, :-1].reshape(-1, h0.shape[-1])  # (B*(T-1), H): row t predicts x[t+1]
                main = chunked_cross_entropy(rows, weight, targets.reshape(-1), self.ce_chunk_rows)
        modules: list[Stats] = []
        if levels:
            token_filter = self._audio_targets if self.weighting.mctp_tokens == "audio" else None
            mctp_weight = weight if self.mctp_grad_into_backbone else weight.detach()
            modules = mctp_losses(levels, labels, sample_ids, mctp_weight, self.ce_chunk_rows, token_filter)
        return main, modules

    def compute_losses(self, batch: dict[str, torch.Tensor], with_main: bool = False) -> dict[str, torch.Tensor]:
        """
        batch ─► backbone ─► h0 (B,T,H) ─► main CE of lm_head(h0[t]) vs x[t+1]   (skipped when frozen)
                               └─► MCTP levels h1..hN (B,T-k-1,H) ─► CE_k vs x[t+k+2]
        loss = weighting.combine(main, [CE_k], [targets_k])   (modules without targets are left out of the mean)
        """
        main, modules = self.head_stats(batch, with_main)
        out: dict[str, torch.Tensor] = {}
        for name, stats in ([("main", main)] if main is not None else []) + [
            (f"mctp_{k}", st) for k, st in enumerate(modules)
        ]:
            s, n, c = stats
            out[f"loss_{name}"], out[f"acc_{name}"], out[f"count_{name}"] = s / n.clamp(min=1), c / n.clamp(min=1), n
        objective_main = out["loss_main"] if main is not None and self.backbone_trainable else None
        module_means = [out[f"loss_mctp_{k}"] for k in range(len(modules))]
        out["loss"] = self.weighting.combine(objective_main, module_means, [n for _, n, _ in modules])
        return out

    def _audio_targets(self, ids: torch.Tensor) -> torch.Tensor:
        """True for audio codes and the audio markers (`loss.mctp_tokens=audio`)."""
        v = self.backbone.audio_vocab
        return v.is_audio(ids) | (ids == v.begin_of_audio) | (ids == v.end_of_audio)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.compute_losses(batch)
        B = batch["input_ids"].shape[0]
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=B)
        heads = [k.removeprefix("count_") for k in out if k.startswith("count_")]
        counts = torch.stack([out[f"count_{h}"] for h in heads]).tolist()  # one sync for all heads
        present = [h for h, n in zip(heads, counts) if n > 0]  # a head without targets this step logs nothing
        self.log_dict({f"train/{m}_{h}": out[f"{m}_{h}"] for h in present for m in ("loss", "acc")}, batch_size=B)
        self.log("lr", self.optimizers().param_groups[0]["lr"], prog_bar=True, batch_size=B)
        return out["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        main, modules = self.head_stats(batch, with_main=True)
        self.val_heads.update([main, *modules])

    def on_validation_epoch_end(self) -> None:
        """Token-weighted epoch means of every head (summed across ranks by the metric), and val/loss from them."""
        r = self.val_heads.compute()
        self.val_heads.reset()
        # (heads,) each; torchmetrics squeezes a one-head result to a scalar
        loss, acc, count = (r[k].reshape(-1) for k in ("loss", "acc", "count"))
        loss, acc = loss.float(), acc.float()
        present = (count > 0).tolist()
        names = ["main"] + [f"mctp_{k}" for k in range(self.num_mctp)]
        metrics = {}
        for i, name in enumerate(names):
            if present[i]:
                metrics[f"val/loss_{name}"], metrics[f"val/acc_{name}"] = loss[i], acc[i]
        metrics["val/loss"] = self.weighting.combine(loss[0], list(loss[1:]), list(count[1:])).to(loss.device)
        self.log("val/loss", metrics.pop("val/loss"), prog_bar=True)
        self.log_dict(metrics)

    # -- optimisation ---------------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        kw = self.optimizer_factory.keywords  # lr and weight_decay are bound in conf/model/optimizer/*.yaml
        # row-masked tensors (LoRA's audio-token rows) get no weight decay: their frozen rows must not move
        no_decay = self.lora_report.row_param_names if self.lora_report else ()
        groups = param_groups(self.lm.named_parameters(), kw["lr"], kw["weight_decay"], self.lr_scales, no_decay)
        for g in groups:
            log.info("optimiser group: lr=%.3g wd=%.3g params=%d", g["lr"], g["weight_decay"], len(g["params"]))
            g.pop("names")
        optimizer = self.optimizer_factory(groups)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=max(total, 1))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
