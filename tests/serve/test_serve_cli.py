"""`python serve.py ckpt_path=...`: the Hydra entry point binds to 127.0.0.1 by default and answers /health and a
chat completion; a bad ckpt_path is a clear error."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import free_port, serve_cfg

ROOT = Path(__file__).resolve().parents[2]


def test_config_defaults_are_safe(artefacts):
    cfg = serve_cfg(artefacts)
    assert cfg.host == "127.0.0.1" and cfg.server.api_key is None and cfg.server.slots >= 1


def test_serve_py_runs_a_server(artefacts):
    port = free_port()
    cmd = [sys.executable, "serve.py", f"ckpt_path={artefacts['hf']}", f"port={port}", "torch_threads=1",
           f"paths.root_dir={artefacts['root']}", f"paths.codec_dir={artefacts['codec']}", "audio.codebook_size=2048",
           "audio.frame_rate=25.0", "server.stop_ids=[]", "log_level=warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, health = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
                break
            except httpx.TransportError:
                time.sleep(0.3)
        out = proc.stdout.read() if proc.poll() is not None else ""
        assert health is not None, f"serve.py did not come up (exit {proc.poll()}): {out}"
        assert health["status"] == "ok" and health["sample_rate"] == 16000 and not health["auth"]
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=60,
                       json={"model": "vita-audio", "messages": [{"role": "user", "content": "Hi."}],
                             "max_tokens": 6})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 6
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_a_missing_checkpoint_is_a_clear_error(artefacts, tmp_path):
    from vita_audio.cli.serve import build_app

    cfg = serve_cfg(artefacts, [f"ckpt_path={tmp_path / 'missing'}"])
    with pytest.raises(FileNotFoundError, match="does not exist"):  # main() prints it as "serve.py: ..."
        build_app(cfg)
