"""`python infer.py`: the Hydra entry point on an exported tiny model and a tiny codec, every task."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir

from tests.audio.conftest import TINY as TINY_CODEC
from tests.audio.conftest import speechlike
from vita_audio.audio.builtin import BuiltinDetokenizer, BuiltinTokenizer, save_codec
from vita_audio.audio.builtin.model import CodecModel
from vita_audio.audio.io import write_audio
from vita_audio.checkpoint import export_pretrained
from vita_audio.cli.common import CONFIG_DIR
from vita_audio.cli.infer import infer
from vita_audio.inference import Sampling, SpeechLM, load_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup(lm, tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    torch.manual_seed(0)
    codec_dir = save_codec(CodecModel(TINY_CODEC).eval(), root / "codec")
    hf = export_pretrained(lm, root / "hf", interleave_ratio=[1, 4])
    wav = write_audio(root / "q.wav", torch.from_numpy(speechlike(1.0, seed=3)), 16000)
    return root, codec_dir, hf, wav


def _cfg(root, codec_dir, overrides):
    base = [f"paths.root_dir={root}", f"paths.codec_dir={codec_dir}", "audio.codebook_size=32", "stop_ids=[]",
            "drafting=all",  # random weights never open an audio span: let the MCTP steps write text, as the reference
            f"audio.frame_rate={TINY_CODEC.frame_rate}", "max_new_tokens=24"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="infer", overrides=[*base, *overrides])
    out = root / "out" / f"run{len(list((root / 'out').glob('run*'))) if (root / 'out').is_dir() else 0}"
    out.mkdir(parents=True)
    cfg.paths.output_dir = str(out)
    return cfg, out


@pytest.mark.parametrize("task", ["tts", "s2s", "asr"])
def test_every_task_writes_its_answer(setup, task):
    root, codec_dir, hf, wav = setup
    inp = "Hello there." if task == "tts" else str(wav)
    cfg, out = _cfg(root, codec_dir, [f"task={task}", f"ckpt_path={hf}", f"input={inp}", "sampling.do_sample=false",
                                      "sampling.repetition_penalty=1.0"])
    result = infer(cfg)
    info = json.loads((out / "result.json").read_text())
    assert (out / "answer.txt").read_text() == result.text + "\n" == info["text"] + "\n"
    assert info["schedule"] == [1, 4]  # the checkpoint's schedule: 5 forwards for 24 tokens
    # the same decode through the Python API gives the same tokens
    speech = SpeechLM(load_model(hf), BuiltinTokenizer(str(codec_dir)), BuiltinDetokenizer(str(codec_dir)))
    ref = speech.run(task, inp, max_new_tokens=24, sampling=Sampling.greedy(), stop_ids=[], drafting="all")
    assert result.tokens == ref.tokens and info["new_tokens"] == len(ref.tokens)
    if task == "asr":
        assert not (out / "answer.wav").exists()
    else:
        data, sr = sf.read(out / "answer.wav")
        assert sr == 16000 and abs(len(data) - ref.wav.numel()) == 0 and info["audio_codes"] == ref.codes.numel()


@pytest.mark.parametrize("mode", ["vanilla", "turbo", "verified"])
def test_modes(setup, mode):
    root, codec_dir, hf, wav = setup
    cfg, out = _cfg(root, codec_dir, ["task=tts", f"ckpt_path={hf}", "input=Hi.", f"mode={mode}",
                                      "sampling.do_sample=false"])
    if mode == "turbo":  # the tiny model has 4 modules: Turbo's 10-step runs do not fit
        with pytest.raises(ValueError, match="4 MCTP module"):
            infer(cfg)
        return
    infer(cfg)
    info = json.loads((out / "result.json").read_text())
    assert info["verify"] == (mode == "verified")
    if mode == "vanilla":
        assert info["backbone_forwards"] == info["new_tokens"] and info["mctp_steps"] == 0


def test_cli_errors_name_the_input(setup):
    root, codec_dir, hf, wav = setup
    cmd = [sys.executable, "infer.py", "task=asr", f"ckpt_path={root / 'missing'}", f"input={wav}",
           f"paths.root_dir={root}"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "does not exist" in res.stderr
    cfg, _ = _cfg(root, codec_dir, ["task=asr", f"ckpt_path={hf}", f"input={root / 'nope.wav'}"])
    with pytest.raises(Exception, match="no such audio file"):
        infer(cfg)
    cfg, _ = _cfg(root, codec_dir, ["task=tts", f"ckpt_path={hf}", "input=Hi.", "mode=warp"])
    with pytest.raises(ValueError, match="unknown decode mode"):
        infer(cfg)
