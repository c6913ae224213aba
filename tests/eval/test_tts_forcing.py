"""task=tts with `force_text`: an extra row per mode whose answers carry exactly the input text; the text channel
of every answer is scored against the input text; what forcing cannot honour fails before decoding."""

from __future__ import annotations

import pytest
from transformers import GenerationConfig

from tests.eval.conftest import ParrotJudge, eval_cli, world_eval_overrides
from tests.inference.conftest import tiny_lm
from vita_audio.audio.builtin import BuiltinDetokenizer
from vita_audio.eval.adapters import VitaJsonl
from vita_audio.eval.tasks import run_tts
from vita_audio.inference import SpeechLM


def _speech(codec, ratio=(1, 10, 4, 10)) -> SpeechLM:
    lm = tiny_lm()
    if ratio is not None:
        lm.generation_config = GenerationConfig(mtp_inference_mode=list(ratio))
    return SpeechLM(lm, None, BuiltinDetokenizer(codec))


def test_forced_rows_copy_the_text_beside_free_ones(world):
    root, codec = world[0], world[4]
    samples = VitaJsonl(root / "test.jsonl", "tts").samples()
    res = run_tts(_speech(codec), samples, ParrotJudge("hello there"), modes=["vanilla"], max_new_tokens=120,
                  force_text=True)
    assert list(res.metrics) == ["vanilla", "vanilla_forced_text"] and res.info["force_text"] is True
    free, forced = res.metrics["vanilla"], res.metrics["vanilla_forced_text"]
    assert forced["text_copied"] == 1.0 and forced["text_wer"] == 0.0  # "hello there", exactly
    assert free["text_copied"] == 0.0 and free["text_wer"] > 0  # the random model writes other text
    assert forced["no_audio"] == 0 and forced["judge_wer"] == 0.0  # forced spans hold codes: the judge hears audio
    rows = [p for p in res.predictions if p["mode"] == "vanilla_forced_text"]
    assert [p["generated_text"] for p in rows] == ["hello there"]


def test_free_decoding_alone_without_forcing(world):
    root, codec = world[0], world[4]
    samples = VitaJsonl(root / "test.jsonl", "tts").samples()
    res = run_tts(_speech(codec), samples, ParrotJudge("hello there"), modes=["vanilla"], max_new_tokens=30)
    assert list(res.metrics) == ["vanilla"] and res.info["force_text"] is False
    assert "text_copied" in res.metrics["vanilla"]


def test_forcing_that_cannot_be_honoured_fails_before_decoding(world):
    root, codec = world[0], world[4]
    samples = VitaJsonl(root / "test.jsonl", "tts").samples()
    judge = ParrotJudge("hello there")
    with pytest.raises(ValueError, match="stores none .mtp_inference_mode.; give interleave_ratio"):
        run_tts(_speech(codec, ratio=None), samples, judge, modes=["vanilla"], force_text=True)
    with pytest.raises(ValueError, match="force_text cannot be combined with verified"):
        run_tts(_speech(codec), samples, judge, modes=["verified"], force_text=True)
    with pytest.raises(ValueError, match="force_text needs task 'tts'"):
        _speech(codec).stream("asr", "x.wav", force_text=True)


def test_eval_cli_tts_force_text(world, tmp_path):
    # the exported checkpoint stores its interleave ratio [1, 4]
    overrides = world_eval_overrides(world, "tts", "task.max_new_tokens=40", "task.force_text=true")
    metrics, saved = eval_cli(tmp_path, overrides)
    assert set(saved["modes"]) == {"vanilla", "vanilla_forced_text"}
    assert metrics["vanilla_forced_text/text_copied"] == 1.0 and "vanilla/text_copied" in metrics
    # eval.py opens both codec halves for tts: the original recordings' resynthesis is judged beside them
    assert saved["resynthesis"] == {"samples": 1, "failed": 0} and "judge_wer_on_resynthesis" in saved
