"""Evaluation tasks and dataset adapters on tiny fixtures the tests write (tiny random model and codec, `world`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.audio.conftest import speechlike
from tests.eval.conftest import ParrotJudge, eval_cli, world_eval_overrides
from tests.inference.conftest import tiny_lm
from vita_audio.audio.io import write_audio
from vita_audio.eval.adapters import LibriSpeech, SeedTTS, SpokenQA, VitaJsonl
from vita_audio.eval.tasks import run_asr, run_sqa, run_tts, write_results
from vita_audio.inference import SpeechLM


def test_vita_jsonl_adapter_splits_tasks_and_counts_bad_records(world):
    root = world[0]
    asr = VitaJsonl(root / "test.jsonl", "asr")
    got = asr.samples()
    assert [s.text for s in got] == ["seven times five", "hello there"]
    assert asr.skips.total() == 1 and asr.other_tasks == 2
    (tts,) = VitaJsonl(root / "test.jsonl", "tts").samples()
    assert tts.text == "hello there" and tts.ref_audio.name == "u1.wav"
    (sqa,) = VitaJsonl(root / "test.jsonl", "sqa").samples()
    assert sqa.answers == ("thirty five", "35") and sqa.audio.name == "u2.wav"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VitaJsonl(root / "nope.jsonl", "asr").samples()


def test_vita_jsonl_limit_first_or_spread(world, tmp_path):
    """`limit` keeps the first rows; with `spread` it keeps rows spread over the whole file (every part of it)."""
    root = world[0]
    asr_line = next(line for line in (root / "test.jsonl").read_text().splitlines() if "hello there" in line)
    rows = [json.loads(asr_line) for _ in range(10)]
    for i, row in enumerate(rows):
        row["messages"][-1]["content"] = f"row {i}"
        row["audios"] = [str(root / a) if not Path(a).is_absolute() else a for a in row["audios"]]
    path = tmp_path / "ten.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [s.text for s in VitaJsonl(path, "asr", limit=3).samples()] == ["row 0", "row 1", "row 2"]
    assert [s.text for s in VitaJsonl(path, "asr", limit=3, spread=True).samples()] == ["row 0", "row 3", "row 6"]
    assert len(VitaJsonl(path, "asr", limit=20, spread=True).samples()) == 10


def test_librispeech_seed_tts_and_spoken_qa_layouts(tmp_path):
    chap = tmp_path / "ls" / "84" / "121"
    chap.mkdir(parents=True)
    (chap / "84-121.trans.txt").write_text("84-121-0000 GO DO YOU HEAR\n84-121-0001 BUT IN LESS THAN FIVE MINUTES\n")
    write_audio(chap / "84-121-0000.flac", torch.from_numpy(speechlike(0.5, 0)), 16000)
    ls = LibriSpeech(tmp_path / "ls").samples()
    assert [(s.id, s.text) for s in ls] == [("84-121-0000", "GO DO YOU HEAR"),
                                             ("84-121-0001", "BUT IN LESS THAN FIVE MINUTES")]
    assert ls[0].audio.suffix == ".flac"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*.trans.txt"):
        LibriSpeech(tmp_path / "empty").samples()

    en = tmp_path / "seedtts" / "en"
    (en / "wavs").mkdir(parents=True)
    (en / "meta.lst").write_text("u1|prompt words|prompt-wavs/u1.wav|Hello world.\nu2|p|prompt-wavs/u2.wav|Bye.\n")
    write_audio(en / "wavs" / "u1.wav", torch.from_numpy(speechlike(0.5, 1)), 16000)
    st = SeedTTS(en).samples()
    assert [s.text for s in st] == ["Hello world.", "Bye."] and st[0].ref_audio is not None and st[1].ref_audio is None
    (en / "bad.lst").write_text("u1|only two\n")
    with pytest.raises(ValueError, match="4 '\\|'-separated fields"):
        SeedTTS(en / "bad.lst").samples()

    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"id": "q1", "question": "Capital of Greece?", "audio": "q1.wav",
                              "answer": "Athens"}) + "\n")
    (s,) = SpokenQA(qa).samples()
    assert s.answers == ("Athens",) and s.audio == tmp_path / "q1.wav"
    qa.write_text(json.dumps({"question": "no audio"}) + "\n")
    with pytest.raises(ValueError, match="needs 'audio' and 'answers'"):
        SpokenQA(qa).samples()


def test_asr_keeps_unreadable_audio_in_the_denominator(world):
    root, speech = world[0], world[1]
    samples = VitaJsonl(root / "test.jsonl", "asr").samples()
    res = run_asr(speech, samples, modes=["vanilla", "verified"], max_new_tokens=6)  # greedy by default
    assert res.metrics["vanilla"]["wer"] == res.metrics["verified"]["wer"]  # verified greedy == Vanilla
    m = res.metrics["vanilla"]
    assert m["failed"] == 1
    # the broken sample scores as all deletions: WER >= its 2 words out of the 5 reference words
    assert m["wer"] >= 2 / 5
    assert [p["error"] is not None for p in res.predictions] == [False, True] * 2


def test_tts_and_sqa_scoring_with_a_known_judge(world, tmp_path):
    root, speech = world[0], world[1]
    tts = VitaJsonl(root / "test.jsonl", "tts").samples()
    res = run_tts(speech, tts, ParrotJudge("hello there"), modes=["vanilla"], max_new_tokens=40)
    assert res.info["judge_wer_on_original_audio"] == 0.0 and res.info["baseline_samples"] == 1
    m = res.metrics["vanilla"]
    # the judge hears the text whenever there is audio; no audio -> all deletions
    assert m["judge_wer"] == m["judge_wer_on_baseline_samples"] == (1.0 if m["no_audio"] else 0.0)

    sqa = VitaJsonl(root / "test.jsonl", "sqa").samples()
    res = run_sqa(speech, sqa, ParrotJudge("it is 35"), modes=["vanilla"], max_new_tokens=30)
    m = res.metrics["vanilla"]
    assert m["s2s_accuracy"] == (0.0 if m["no_audio"] else 1.0)
    assert m["s2t_accuracy"] in (0.0, 1.0)
    out = write_results(res, tmp_path / "run")
    assert json.loads((out / "metrics.json").read_text())["modes"]["vanilla"]["s2s_accuracy"] == m["s2s_accuracy"]
    assert "| vanilla |" in (out / "metrics.md").read_text()
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 1


def test_modes_need_modules_and_exist(world):
    root, speech = world[0], world[1]
    samples = VitaJsonl(root / "test.jsonl", "asr").samples()
    with pytest.raises(ValueError, match="unknown decode mode 'warp'"):
        run_asr(speech, samples, modes=["warp"])
    plain = SpeechLM(tiny_lm(num_modules=0), speech.tokenizer, speech.detokenizer)
    with pytest.raises(ValueError, match="needs MCTP modules"):
        run_asr(plain, samples, modes=["boost"])


@pytest.mark.parametrize("task", ["asr", "tts", "sqa"])
def test_eval_cli_every_generation_task(world, task, tmp_path):
    metrics, saved = eval_cli(tmp_path, world_eval_overrides(world, task, "task.max_new_tokens=8"))
    assert saved["task"] == task and saved["invalid_records_skipped"] == 1
    key = {"asr": "wer", "tts": "judge_wer", "sqa": "s2t_accuracy"}[task]
    assert metrics[f"vanilla/{key}"] == saved["modes"]["vanilla"][key]


class _LengthJudge:
    """Hears "hello there" in audio of about the original's length (0.8 s), nothing in anything else: the
    resynthesis figure is 0 only if the judge got the codec's decode of the original, not the model's speech."""

    sample_rate = 16000

    def __init__(self) -> None:
        self.lengths: list[float] = []

    def transcribe(self, wav, sample_rate):
        self.lengths.append(wav.numel() / sample_rate)
        return "hello there" if abs(self.lengths[-1] - 0.8) < 0.1 else ""


def test_tts_judges_the_codecs_resynthesis_of_the_originals(world):
    root, speech = world[0], world[1]
    tts = VitaJsonl(root / "test.jsonl", "tts").samples()
    judge = _LengthJudge()
    res = run_tts(speech, tts, judge, modes=["vanilla"], max_new_tokens=4)
    # heard: the original (0.8 s), its resynthesis (0.8 s), then the model's 4-token answer (at most 0.16 s)
    assert judge.lengths[1] == pytest.approx(0.8, abs=0.1)
    assert res.info["judge_wer_on_resynthesis"] == 0.0 and res.info["resynthesis"] == {"samples": 1, "failed": 0}
    assert res.metrics["vanilla"]["judge_wer"] == 1.0
    off = run_tts(speech, tts, _LengthJudge(), modes=["vanilla"], max_new_tokens=4, resynthesis=False)
    assert "judge_wer_on_resynthesis" not in off.info and off.info["resynthesis"] == "off"
