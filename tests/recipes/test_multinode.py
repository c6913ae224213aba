"""The documented multi-node entry points on CPU: `torchrun ... train.py ... trainer=ddp` and SLURM's `srun train.py`
(Lightning's standard launch, here two processes with the variables srun sets), each with 2 gloo ranks on
127.0.0.1, give the same per-step losses as one process on the doubled batch; the ranks' rows are exactly the
halves of the single process's batch; and the example sbatch script composes to a valid config.

Equal losses need equal supervised-token counts on the ranks: DDP averages the ranks' gradients (a mean of
per-rank means), one process takes the token-weighted mean of the whole batch, and the two agree when every rank
has as many targets as the other. The data here is built so: TTS samples of one fixed text and audio of one fixed
length (different codes), so every packed row has the same number of samples and targets in every head.

Hang discipline (tests/distributed.py): subprocesses in their own session (a timeout kills the whole
group), a free port, GLOO_SOCKET_IFNAME=lo, rendezvous / SLURM variables cleared from the environment.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import compose_cfg
from tests.distributed import clean_env, free_port, run_all

ROOT = Path(__file__).resolve().parents[2]
SBATCH = ROOT / "scripts" / "slurm" / "train.sbatch"
STEPS, HALF = 3, 2  # training steps; rows per rank (the single process takes 2 * HALF)
TIMEOUT = 420


@pytest.fixture(scope="module")
def uniform_data(tmp_path_factory):
    """48 TTS samples: one text, 0.4 s of audio each (10 codes of the energy tokenizer), different codes."""
    from tests.fakes import EnergyTokenizer
    from vita_audio.data.cache import build_cache

    root = tmp_path_factory.mktemp("uniform")
    rng = np.random.default_rng(0)
    sr, frames, hop = 16000, 10, 640
    wavs = []
    for i in range(48):
        amp = 10 ** rng.uniform(-3, -0.3, frames)  # one random energy level per codec frame
        wav = (rng.standard_normal(frames * hop) * np.repeat(amp, hop)).clip(-0.99, 0.99).astype(np.float32)
        path = root / "wavs" / f"{i:02d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), wav, sr, subtype="FLOAT")
        wavs.append(str(path))
    rows = [{"messages": [{"role": "user", "content": "Convert the text to speech.\nsay it now."},
                          {"role": "assistant", "content": "<|audio|>"}], "audios": [w]} for w in wavs]
    jsonl = root / "train.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_cache(wavs, EnergyTokenizer(codebook_size=64), root / "cache", "builtin", progress=False)
    return jsonl, root / "cache"


def _overrides(data, out: Path, batch: int) -> list[str]:
    jsonl, cache = data
    return [
        "+experiment=boost_stage4", "init_from=null", "model.mctp.num_modules=2",
        "model.backbone.config.hidden_size=64", "model.backbone.config.intermediate_size=128",
        "model.backbone.config.num_hidden_layers=2", f"data.batch_size={batch}", "data.max_len=64",
        f"data.train_sources=[{{name: uniform, path: '{jsonl}', ratio: 1.0}}]", "data.val_sources=[]",
        f"paths.cache_dir={cache}", "audio.codebook_size=64", "audio.tokenizer._target_=tests.fakes.EnergyTokenizer",
        "+audio.tokenizer.codebook_size=64", f"trainer.max_steps={STEPS}", "trainer.limit_val_batches=0",
        "trainer.accelerator=cpu", "trainer.precision=32-true", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "callbacks.publish_stage.export=false", f"paths.root_dir={out}",
        "+callbacks.probe._target_=tests.recipes.multinode_probe.LossProbe", f"+callbacks.probe.out_dir={out}/probe",
    ]


def _records(out: Path, world: int) -> list[list[dict]]:
    """[rank][step] probe records."""
    recs = [[json.loads(x) for x in (out / "probe" / f"rank{r}.jsonl").read_text().splitlines()] for r in range(world)]
    assert all(len(r) == STEPS and all(x["world"] == world for x in r) for r in recs), recs
    return recs


@pytest.fixture(scope="module")
def single(uniform_data, tmp_path_factory):
    """One process, 2 * HALF rows per step."""
    out = tmp_path_factory.mktemp("single")
    cmd = [sys.executable, "train.py", *_overrides(uniform_data, out, 2 * HALF), "trainer=cpu"]
    run_all([(cmd, clean_env())], TIMEOUT)
    return _records(out, 1)[0]


def _check_halves(single: list[dict], ranks: list[list[dict]]) -> None:
    for s in range(STEPS):
        whole, parts = single[s], [r[s] for r in ranks]
        assert all(len(p["rows"]) == HALF for p in parts) and len(whole["rows"]) == 2 * HALF
        # rank r takes rows r, r + 2, ... of the plan: the two halves are exactly the single process's batch
        assert sorted(parts[0]["rows"] + parts[1]["rows"]) == sorted(whole["rows"]), f"step {s}: rows differ"
        assert parts[0]["targets"] == parts[1]["targets"] == whole["targets"] // 2, "unequal targets per rank"
        ddp_loss = sum(p["loss"] for p in parts) / len(parts)  # equal counts: the mean of means is the mean
        assert ddp_loss == pytest.approx(whole["loss"], rel=2e-5, abs=2e-5), (s, [p["loss"] for p in parts], whole)
    assert len({round(r[0]["loss"], 6) for r in ranks}) == 2, "both ranks saw the same data"


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process_on_the_doubled_batch(uniform_data, single, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    # the README's multi-node command, on one node: --nnodes / --node_rank / --master_addr as on a cluster
    cmd = [*launcher, "--nnodes", "1", "--node_rank", "0", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "train.py", *_overrides(uniform_data, tmp_path, HALF),
           "trainer=ddp", "trainer.devices=2", "trainer.num_nodes=1"]
    run_all([(cmd, clean_env())], TIMEOUT)
    _check_halves(single, _records(tmp_path, 2))


@pytest.mark.slow
def test_slurm_srun_two_tasks_match_one_process_on_the_doubled_batch(uniform_data, single, tmp_path):
    """What `srun` starts for `--ntasks-per-node=2` on one node: one train.py per task with SLURM's variables;
    Lightning's SLURMEnvironment makes the process group from them (no torchrun, no spawning)."""
    port = free_port()
    cmd = [sys.executable, "train.py", *_overrides(uniform_data, tmp_path, HALF), "trainer=ddp", "trainer.devices=2",
           "trainer.num_nodes=1"]
    slurm = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "1", "SLURM_NODEID": "0",
             "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "vita-train", "SLURM_NODELIST": "127.0.0.1",
             "MASTER_PORT": str(port)}
    run_all([(cmd, clean_env(**slurm, SLURM_PROCID=str(r), SLURM_LOCALID=str(r))) for r in (0, 1)], TIMEOUT)
    _check_halves(single, _records(tmp_path, 2))


def _sbatch_overrides(text: str) -> tuple[dict[str, str], list[str]]:
    """(#SBATCH options, the train.py overrides of the script's srun line) with the script's variables filled in."""
    opts = dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)", text, re.M))
    line = re.search(r"^srun .*?train\.py (.*?)(?<!\\)$", text, re.M | re.S).group(1).replace("\\\n", " ")
    line = line.replace('"$@"', "")  # the sbatch command's extra overrides: none here
    values = {k: v for k, v in re.findall(r"^(\w+)=\$\{\w+:-(\S+?)\}$", text, re.M)}  # VAR=${VAR:-default}
    values.update(SLURM_JOB_ID="4242", SLURM_NNODES=opts["nodes"], SLURM_NTASKS_PER_NODE=opts["ntasks-per-node"])
    line = re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), line)
    return opts, shlex.split(line)


def test_sbatch_example_composes_and_matches_its_allocation(tmp_path):
    opts, overrides = _sbatch_overrides(SBATCH.read_text())
    assert "$" not in " ".join(overrides), overrides
    cfg = compose_cfg(tmp_path, [o for o in overrides if not o.startswith("hydra.")])
    assert cfg.trainer.strategy == "ddp"
    # Lightning's SLURM launch: one task per device, every node alike
    assert int(cfg.trainer.devices) == int(opts["ntasks-per-node"]) == int(opts["gpus-per-node"])
    assert int(cfg.trainer.num_nodes) == int(opts["nodes"])
    assert any(o.startswith("hydra.run.dir=") and "4242" in o for o in overrides), "one run dir for all tasks"
