"""DDP on CPU (2 processes, gloo): both ranks train, and they see disjoint rows of the corpus."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_SIZE, corpus_overrides
from tests.distributed import DIST_VARS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_ddp_two_cpu_processes_see_disjoint_rows(tmp_path, tiny_corpus_cache):
    probe = tmp_path / "probe"
    cmd = [sys.executable, str(ROOT / "train.py"), "+experiment=boost_stage1", "trainer=ddp", "trainer.accelerator=cpu",
           "trainer.devices=2", "trainer.precision=32-true", "trainer.max_steps=3", "trainer.limit_val_batches=0",
           "trainer.enable_progress_bar=false", "callbacks.publish_stage.export=false",
           *TEST_SIZE, "data.max_len=512", f"paths.root_dir={tmp_path}", *corpus_overrides(tiny_corpus_cache),
           "+callbacks.probe._target_=tests.recipes.ddp_probe.RowProbe",
           f"+callbacks.probe.out_dir={probe}"]
    # a fresh launch: no rendezvous variables left in this process by earlier distributed tests (DeepSpeed)
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**env, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    seen = {}
    for r in (0, 1):
        lines = [json.loads(x) for x in (probe / f"rank{r}.jsonl").read_text().splitlines()]
        assert len(lines) == 3 and all(x["world"] == 2 for x in lines)
        seen[r] = {h for x in lines for h in x["rows"]}
    assert seen[0] and seen[1] and not (seen[0] & seen[1])
