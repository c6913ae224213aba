"""A callback for the DDP test: records a fingerprint of every training row each rank sees."""

import json
from pathlib import Path

import lightning as L


class RowProbe(L.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        rows = [hash(tuple(r.tolist())) for r in batch["input_ids"]]
        with open(self.out_dir / f"rank{trainer.global_rank}.jsonl", "a") as f:
            f.write(json.dumps({"world": trainer.world_size, "rows": rows}) + "\n")
