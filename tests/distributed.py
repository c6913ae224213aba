"""Launching multi-process CPU tests without hangs: a clean environment, a free port, every process in its own
session so a timeout kills the whole group, and the output of every process in the failure message."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# rendezvous variables a launcher or an earlier in-process distributed test (DeepSpeed) may have left behind
DIST_VARS = {"MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK",
             "GROUP_RANK", "CROSS_RANK", "CROSS_SIZE", "TORCHELASTIC_RUN_ID"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without rendezvous / SLURM variables, gloo on loopback, one thread per process."""
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS and not k.startswith(("SLURM_", "PMI_"))}
    return {**env, "PYTHONPATH": str(ROOT), "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", **extra}


def run_all(cmds: list[tuple[list[str], dict[str, str]]], timeout: int) -> None:
    """Start every command in its own process group; all must exit 0 within `timeout` (else all groups die)."""
    procs = [subprocess.Popen(c, cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True) for c, e in cmds]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=timeout)[0])
    except subprocess.TimeoutExpired:
        outs.append("<timed out>")
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    bad = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode != 0]
    assert not bad, f"exit codes {bad}:\n" + "\n----\n".join(o[-4000:] for o in outs)
