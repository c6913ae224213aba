"""Callbacks of the training stages: throughput, skip reports, publishing a stage's result."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from pathlib import Path

import lightning as L

log = logging.getLogger(__name__)


class TokenThroughput(L.Callback):
    """Logs `train/tokens_per_s` (non-padding tokens per wall second, data loading included) and
    `train/padding_frac`, averaged over the last `window` steps."""

    def __init__(self, window: int = 10) -> None:
        self.window = window
        self._t0: float | None = None
        self._tokens = 0
        self._slots = 0
        self._steps = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        sample_ids = batch.get("sample_ids")
        real = int((sample_ids >= 0).sum()) if sample_ids is not None else batch["input_ids"].numel()
        self._tokens += real
        self._slots += batch["input_ids"].numel()
        self._steps += 1
        if self._t0 is None:  # the first step includes start-up costs: start timing after it
            self._t0, self._tokens, self._slots, self._steps = now, 0, 0, 0
            return
        if self._steps >= self.window:
            pl_module.log("train/tokens_per_s", self._tokens / (now - self._t0), batch_size=1)
            pl_module.log("train/padding_frac", 1 - self._tokens / max(self._slots, 1), batch_size=1)
            self._t0, self._tokens, self._slots, self._steps = now, 0, 0, 0


class ProgressLog(L.Callback):
    """A plain log line every `every_n_steps` optimiser steps (step, loss, LR, tokens/s, ETA): progress stays
    visible where the progress bar is not (logs of batch jobs, `make demo` output piped to a file)."""

    def __init__(self, every_n_steps: int = 25) -> None:
        self.every_n_steps = every_n_steps
        self._t0: float | None = None
        self._step0 = self._last = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0, self._step0 = time.perf_counter(), trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step  # optimiser steps: with accumulation several batches end on one step
        if not trainer.is_global_zero or step == self._last or step % self.every_n_steps or self._t0 is None:
            return
        self._last = step
        elapsed = time.perf_counter() - self._t0
        rate = (step - self._step0) / max(elapsed, 1e-9)  # steps per second
        total = trainer.max_steps if trainer.max_steps > 0 else None
        eta = f", eta {(total - step) / max(rate, 1e-9) / 60:.1f} min" if total else ""
        tps = trainer.callback_metrics.get("train/tokens_per_s")
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        log.info("step %d%s  loss %.4f  lr %.2e%s%s", step, f"/{total}" if total else "", float(outputs["loss"]), lr,
                 f"  {float(tps):,.0f} tok/s" if tps is not None else "", eta)


class LearningRates(L.Callback):
    """Logs the learning rate of every optimiser parameter group as `lr/<group name>` before each step (the LR
    that step uses), e.g. stage 4's `lr/base_decay` and `lr/x10_decay` (the MCTP group at 10 x LR).

    What Lightning's `LearningRateMonitor` reports, logged through the LightningModule instead of the loggers
    directly, so it also works without a logger (loggers are opt-in here) and shows in `callback_metrics`."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        for i, opt in enumerate(trainer.optimizers):
            for j, group in enumerate(opt.param_groups):
                name = group.get("name", f"pg{j}") if len(trainer.optimizers) == 1 else f"opt{i}_{group.get('name', j)}"
                pl_module.log(f"lr/{name}", float(group["lr"]), on_step=True, on_epoch=False, batch_size=1)


class SkipReport(L.Callback):
    """Logs and prints the data module's counted skips (bad records) at the end of every epoch."""

    def _report(self, trainer, pl_module, split: str) -> None:
        dm = trainer.datamodule
        counts = dm.skip_counts() if dm is not None and hasattr(dm, "skip_counts") else {}
        for reason, n in counts.items():
            pl_module.log(f"data/skipped_{reason}", float(n), batch_size=1)
        if counts and trainer.is_global_zero:
            total = sum(counts.values())
            log.warning("%s: skipped %d records: %s", split, total, ", ".join(f"{k}={v}" for k, v in counts.items()))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._report(trainer, pl_module, "train")


class PublishStage(L.Callback):
    """At the end of a finished fit, writes to `dirpath`
        final.safetensors   the module's weights only (the next stage's `init_from`, read lazily tensor by tensor;
                            LoRA adapters merged, plain names; `vita_audio.checkpoint.weights`)
        final.ckpt          a Lightning checkpoint for eval.py / infer.py / cli.export: weights, training config
                            and what rebuilds the model without the base model's directory (`checkpoint.record`),
                            no optimizer state unless `full_checkpoint` (resume from the run's own
                            checkpoints/last.ckpt instead); under DeepSpeed a ZeRO directory, as DeepSpeed saves it
                            (final.ckpt and final.safetensors store one publish id: `init_from` pairs them by it)
        final_metrics.txt   the last train / val losses
        hf/                 when `export` is on: an HF-style directory in the reference layout

    Runs that did not train to the end (interrupted, `fast_dev_run`, no step at all) publish nothing unless
    `force` is set, so a smoke test never overwrites a real stage. Under DeepSpeed ZeRO-3 the partitioned
    parameters are gathered for the export.
    """

    def __init__(self, dirpath: str, export: bool = True, interleave_ratio: list[int] | None = None,
                 force: bool = False, full_checkpoint: bool = False) -> None:
        self.dirpath = Path(dirpath)
        self.export, self.force, self.full_checkpoint = export, force, full_checkpoint
        self.interleave_ratio = list(interleave_ratio) if interleave_ratio is not None else None

    @staticmethod
    def finished(trainer) -> bool:
        if trainer.interrupted or trainer.fast_dev_run or trainer.global_step == 0:
            return False
        return trainer.max_steps < 0 or trainer.global_step >= trainer.max_steps

    def on_fit_end(self, trainer, pl_module) -> None:
        if not (self.force or self.finished(trainer)):
            log.warning("stage not published to %s: fast_dev_run, interrupted or stopped before max_steps (set "
                        "callbacks.publish_stage.force=true to publish anyway)", self.dirpath)
            return
        self.dirpath.mkdir(parents=True, exist_ok=True)
        publish_id = uuid.uuid4().hex if trainer.is_global_zero else None
        pl_module.publish_id = trainer.strategy.broadcast(publish_id)  # every rank writes the same record
        trainer.save_checkpoint(self.dirpath / "final.ckpt", weights_only=not self.full_checkpoint)
        with _gathered(trainer, pl_module):
            if trainer.is_global_zero:
                save_weights(pl_module, self.dirpath / "final.safetensors")
        if trainer.is_global_zero:
            losses = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train/loss", "val/loss"))}
            (self.dirpath / "final_metrics.txt").write_text(
                "".join(f"{k}\t{v:.4f}\n" for k, v in sorted(losses.items()))
            )
        if self.export:
            with _gathered(trainer, pl_module):
                if trainer.is_global_zero:
                    from vita_audio.checkpoint import export_pretrained

                    export_pretrained(pl_module.lm, self.dirpath / "hf", interleave_ratio=self.interleave_ratio,
                                      audio_codec=pl_module.audio_codec())
        pl_module.publish_id = None
        if trainer.is_global_zero:
            log.info("stage published: %s", self.dirpath)


def save_weights(pl_module, path: Path) -> None:
    """The module's state dict (LoRA adapters merged) as a weights file with its training config and, for a
    `SpeechLMModule`, the record that rebuilds it (`vita_audio.checkpoint.weights`)."""
    from vita_audio.checkpoint.weights import save_weights_file
    from vita_audio.model.lora import merged_adapters

    record = getattr(pl_module, "checkpoint_record", None)
    with merged_adapters(pl_module.lm):
        save_weights_file(pl_module.state_dict().items(), path, pl_module.hparams.get("config"),
                          None if record is None else record())


def _gathered(trainer, pl_module):
    """A context in which every parameter is whole on rank 0 (ZeRO-3 partitions them); a no-op otherwise."""
    if getattr(trainer.strategy, "zero_stage_3", False):
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(pl_module.parameters()), modifier_rank=None)
    return contextlib.nullcontext()
