"""eval.py's `task.drafting`: every generation task decodes its modes with the drafting asked (verified mode checks
every draft and takes none), the speed task times it, and one the checkpoint cannot honour fails before any work."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from tests.eval.conftest import ParrotJudge, ScriptedSpeech
from tests.inference.conftest import tiny_lm
from vita_audio.cli.common import CONFIG_DIR
from vita_audio.eval.adapters import EvalSample
from vita_audio.eval.tasks import run_asr, run_speed, run_sqa, run_tts
from vita_audio.inference.schedule import DEFAULT_DRAFTING


@pytest.fixture(scope="module")
def lm10():
    return tiny_lm(num_modules=10)


@pytest.mark.parametrize("drafting", ["audio", "all", None])
def test_generation_tasks_decode_with_the_drafting_asked(world, lm10, drafting):
    speech = ScriptedSpeech(world[1], {"a.wav": "hello", "hello there": "hello there"}, audio=True)
    speech.lm = lm10
    modes = ["vanilla", "turbo", "verified"]
    asr = run_asr(speech, [EvalSample(id="a", text="hello", audio=Path("a.wav"))], modes=modes, drafting=drafting)
    tts = run_tts(speech, [EvalSample(id="t", text="hello there")], ParrotJudge("hello there"), modes=modes,
                  drafting=drafting)
    sqa = run_sqa(speech, [EvalSample(id="q", text="hello", audio=Path("a.wav"), answers=("hello",))],
                  ParrotJudge("hello"), modes=modes, drafting=drafting)
    want = drafting or DEFAULT_DRAFTING
    assert [c["drafting"] for c in speech.calls] == [want] * 9
    for res in (asr, tts, sqa):
        assert res.info["decodes"]["turbo"] == {"schedule": [1, 10], "verify": False, "drafting": want}
        assert "drafting" not in res.info["decodes"]["verified"]


def test_a_drafting_the_checkpoint_cannot_honour_fails_before_decoding(world):
    speech = ScriptedSpeech(world[1], {"a.wav": "hello"})
    speech.lm = tiny_lm(num_modules=10)
    bb = speech.lm.backbone
    bb.audio_vocab = dataclasses.replace(bb.audio_vocab, end_of_audio=bb.vocab_size + 1)  # no row in the head
    sample = [EvalSample(id="a", text="hello", audio=Path("a.wav"))]
    with pytest.raises(ValueError, match="drafting='audio'.*drafting='all'"):
        run_asr(speech, sample, modes=["vanilla", "boost"], drafting="audio")
    with pytest.raises(ValueError, match="drafting='audio'.*drafting='all'"):
        run_speed(speech.lm, modes=["boost"], rounds=1, new_tokens=4, drafting="audio")
    assert speech.calls == []  # nothing was decoded
    run_asr(speech, sample, modes=["vanilla", "verified"], drafting="audio")  # no unverified MCTP step: fine
    with pytest.raises(ValueError, match="unknown drafting 'text'"):
        run_asr(speech, sample, modes=["boost"], drafting="text")


def test_speed_task_times_the_drafting_asked(lm10):
    """A random model never opens an audio span: with "audio" its Turbo is all backbone steps, with "all" it runs
    the schedule's MCTP steps; the figures say which drafting ran."""
    kw = dict(modes=["vanilla", "turbo"], rounds=1, new_tokens=12, prefill=32)
    audio, every = run_speed(lm10, drafting="audio", **kw), run_speed(lm10, drafting="all", **kw)
    assert audio.info["drafting"] == "audio" and every.info["drafting"] == "all"
    assert audio.metrics["turbo"]["backbone_forwards_per_token"] == 1.0
    assert every.metrics["turbo"]["backbone_forwards_per_token"] == pytest.approx(2 / 12)  # M + 10 m, M + 1 m


@pytest.mark.parametrize("task", ["asr", "tts", "sqa", "speed"])
def test_task_configs_carry_the_drafting_key(task):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="eval", overrides=[f"task={task}", "ckpt_path=x", "task.drafting=all"])
        default = compose(config_name="eval", overrides=[f"task={task}", "ckpt_path=x"])
    assert cfg.task.drafting == "all" and default.task.drafting is None
