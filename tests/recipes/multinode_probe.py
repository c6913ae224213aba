"""A callback for the multi-node test: records, per rank and training step, the loss the rank computed, the
supervised targets of its batch and a fingerprint of each of its rows."""

import json
from pathlib import Path

import lightning as L


class LossProbe(L.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        rec = {
            "step": int(trainer.global_step), "rank": int(trainer.global_rank), "world": int(trainer.world_size),
            "loss": float(loss.detach()), "targets": int((batch["labels"] != -100).sum()),
            "rows": [json.dumps(r.tolist()) for r in batch["input_ids"]],
        }
        with open(self.out_dir / f"rank{trainer.global_rank}.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
