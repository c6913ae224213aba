"""Loading a model for decoding or serving imports neither Lightning nor Hydra: checked in a fresh interpreter on
every format (an export, a .ckpt, a weights file) and through the server's app creation."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.audio.conftest import TINY as TINY_CODEC
from tests.checkpoint.conftest import record_of, tiny, training_config, write_ckpt, write_weights
from vita_audio.audio.builtin import save_codec
from vita_audio.audio.builtin.model import CodecModel
from vita_audio.checkpoint import export_pretrained

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("lightning", "pytorch_lightning", "lightning_fabric", "hydra", "omegaconf")


def test_load_model_and_the_server_import_no_lightning_or_hydra(tmp_path):
    pytest.importorskip("fastapi")
    lm = tiny(2)
    paths = [str(export_pretrained(lm, tmp_path / "hf", interleave_ratio=[1, 2])),
             str(write_ckpt(tmp_path / "final.ckpt", lm, training_config(2, [1, 2]), record_of(lm))),
             str(write_weights(tmp_path / "final.safetensors", lm, training_config(2, [1, 2]), record_of(lm)))]
    torch.manual_seed(0)
    codec = str(save_codec(CodecModel(TINY_CODEC).eval(), tmp_path / "codec"))
    script = textwrap.dedent(f"""
        import json, os, sys
        from vita_audio.checkpoint import load_model
        for path in {paths!r}:
            load_model(path)
        seen = {{"load_model": sorted({{m.split(".")[0] for m in sys.modules}} & set({FORBIDDEN!r}))}}
        from vita_audio.inference import SpeechLM
        from vita_audio.serve import ServeSettings, create_app
        speech = SpeechLM.from_pretrained({paths[1]!r}, audio="builtin", codec_dir={codec!r})
        create_app(speech, ServeSettings())
        seen["serve"] = sorted({{m.split(".")[0] for m in sys.modules}} & set({FORBIDDEN!r}))
        print("SEEN", json.dumps(seen), flush=True)
        os._exit(0)
    """)
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("SEEN ")), None)
    assert line is not None, res.stdout + res.stderr
    assert json.loads(line[5:]) == {"load_model": [], "serve": []}


def test_the_infer_and_serve_entry_points_import_no_lightning():
    """`python infer.py` / `python serve.py` are Hydra mains (Hydra is theirs), but Lightning stays out."""
    script = ("import sys, vita_audio.cli.infer, vita_audio.cli.serve; "
              "print('LIGHTNING', sorted(m for m in sys.modules if m.split('.')[0] in "
              "('lightning', 'pytorch_lightning', 'lightning_fabric')))")
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "LIGHTNING []" in res.stdout, res.stdout + res.stderr
