"""The demo report from metrics files the test writes; non-TTY progress; the demo's output relay; parquet QA sets."""

from __future__ import annotations

import io
import json

import pytest
import torch

from tests.audio.conftest import speechlike
from vita_audio.audio.io import write_audio
from vita_audio.cli.demo import Relay, batches, recipe_for, steps
from vita_audio.cli.demo import main as demo_main
from vita_audio.eval.adapters import SpokenQA
from vita_audio.eval.progress import progress
from vita_audio.eval.report import build_report, goals


def write_run(out, stages, vanilla_wer=0.10, turbo_wer=0.30):
    ev = out / "eval"
    docs = {
        "asr": {"task": "asr", "normalizer": "whisper_en", "samples": 4, "ckpt_path": "ck",
                "modes": {"vanilla": {"wer": vanilla_wer, "failed": 0}, "boost": {"wer": vanilla_wer + 0.02,
                                                                                    "failed": 0},
                          "turbo": {"wer": turbo_wer, "failed": 1}}},
        "tts": {"task": "tts", "samples": 4, "judge_wer_on_original_audio": 0.10, "baseline_samples": 2,
                "judge_wer_on_resynthesis": 0.15, "judge": "PocketSphinxJudge",
                "modes": {m: {"judge_wer": w, "judge_wer_on_baseline_samples": same, "no_audio": 0, "failed": 0,
                              "lm_tokens_per_s": 40.0, "e2e_tokens_per_s": 20.0}
                          for m, w, same in (("vanilla", 0.25, 0.20), ("boost", 0.29, 0.26), ("turbo", 0.25, 0.31))}},
        "sqa": {"task": "sqa", "samples": 5, "rule": "containment",
                "modes": {m: {"s2t_accuracy": 0.8, "s2s_accuracy": 0.6, "no_audio": 0, "failed": 0}
                          for m in ("vanilla", "boost", "turbo")}},
        "speed": {"task": "speed", "batch": 1, "new_tokens": 16, "rounds": 1,
                  "modes": {"vanilla": {"tokens_per_s": 50.0, "first_chunk_s": 0.2, "speedup_vs_vanilla": 1.0},
                            "turbo": {"tokens_per_s": 150.0, "first_chunk_s": 0.05, "speedup_vs_vanilla": 3.0},
                            "verified": {"tokens_per_s": 90.0, "first_chunk_s": 0.1, "accepted": 2.5}}},
    }
    for task, doc in docs.items():
        (ev / task).mkdir(parents=True, exist_ok=True)
        (ev / task / "metrics.json").write_text(json.dumps(doc))
    q = out.parent / "q.wav"
    write_audio(q, torch.from_numpy(speechlike(0.4, 0)), 16000)
    ans = ev / "sqa" / "audio" / "boost" / "t_1.wav"
    ans.parent.mkdir(parents=True)
    write_audio(ans, torch.from_numpy(speechlike(0.4, 1)), 16000)
    (ev / "sqa" / "predictions.jsonl").write_text(json.dumps(
        {"mode": "boost", "id": "t:1", "text": "It is 35.", "judge_heard": "it is thirty five", "s2t": True,
         "s2s": True, "question": "What is seven times five?", "question_audio": str(q), "wav": str(ans)}) + "\n")
    for k, vals in {1: "val/loss\t1.5\nval/loss_main\t1.5\ntrain/loss\t1.0\n",
                    3: "val/loss\t2.3\nval/loss_main\t1.5\nval/loss_mctp_0\t2.3\nval/loss_mctp_1\t2.4\n"}.items():
        (stages / f"boost_stage{k}").mkdir(parents=True)
        (stages / f"boost_stage{k}" / "final_metrics.txt").write_text(vals)
    # two evaluations ran beside each other: 300 s of their own, 240 s of wall time, shared in `counted`
    (out / "timings.json").write_text(json.dumps({
        "codec": {"seconds": 600.0}, "boost_stage1": {"seconds": 660.0},
        "eval_sqa": {"seconds": 200.0, "counted": 150.0, "beside": ["eval_tts"]},
        "eval_tts": {"seconds": 100.0, "counted": 90.0, "beside": ["eval_sqa"]}}))


def test_report_tables_plots_wavs_and_goals(tmp_path):
    out, stages = tmp_path / "demo", tmp_path / "stages"
    write_run(out, stages)
    path = build_report(out, stages)
    md = path.read_text()
    assert "| boost_stage3 | - | 2.300 | 1.500 | 2.300 | 2.400 |" in md  # train, val/loss, main, module 0, 1
    assert "| boost_stage1 | 1.000 | 1.500 | 1.500 |" in md
    assert "| turbo | 30.0% | 1 |" in md and "**10.0%**" in md
    # the total: 25.0, not 26.0 (the beside steps' wall time counted once)
    assert "| verified | 90.0 |" in md and "| **total (wall time)** | **25.0** |" in md
    assert "| eval_sqa | 3.3 | eval_tts |" in md
    for name in ("val_loss", "speed", "quality"):
        if (out / "plots" / f"{name}.png").is_file():  # matplotlib present (extra dev)
            assert f"(plots/{name}.png)" in md
    # the copied question keeps an injective name ("t:1" -> "t%3A1"); the link is URL-quoted to that file
    assert "(wavs/question_t%253A1.wav)" in md and (out / "wavs" / "question_t%3A1.wav").is_file()
    assert "(eval/sqa/audio/boost/t_1.wav)" in md
    # goals: ASR turbo 30% misses 15%; Boost/Turbo ASR within 2 points misses (+20); TTS within +10 of 15%: 31% no
    assert "| ASR WER <= 15% | **no** | vanilla 10.0%, boost 12.0%, turbo 30.0% | 15.0 points over |" in md
    # TTS compares like for like: the model on the sentences with originals (turbo 31%) against the resynthesis
    assert "| TTS judge WER <= codec resynthesis (15.0%, `judge_wer_on_resynthesis`) + 10 points | **no** | " \
           "vanilla 20.0%, boost 26.0%, turbo 31.0% | 6.0 points over |" in md
    assert "| Boost and Turbo within 2 points of Vanilla: ASR WER | **no** | boost +2.0 points, turbo +20.0 points | " \
        "18.0 points beyond |" in md
    assert "| Turbo >= 2.5x Vanilla's tokens/s | yes | 3.00x | - |  |" in md
    assert "| Boost >= 2x Vanilla's tokens/s | not measured |" in md
    assert "| vanilla | 25.0% | 20.0% | 0 | 0 | 40.0 | 20.0 |" in md  # judge WER, same sentences, ..., tokens/s
    assert "LM tokens/s: new tokens / seconds of LM decoding" in md
    assert "| SQA S->T >= 70% on the whole test split (no transfer-split keys) | yes |" in md
    assert "| SQA S->S within 10 points of S->T on the whole test split (no transfer-split keys) | **no** | " \
           "vanilla S->S -20.0 points, boost S->S -20.0 points, turbo S->S -20.0 points | 10.0 points beyond |" in md
    assert "| make demo <= 30 min (wall time of the steps, install not included) | " \
                                                  "yes | 25.0 min | - |  |" in md


def test_goals_with_nothing_measured():
    rows = goals(None, None, None, None)
    assert rows and all(g.met is None and not g.short for g in rows) and len({g.key for g in rows}) == len(rows)


def test_progress_without_a_terminal_writes_lines_not_frames():
    buf = io.StringIO()  # not a TTY
    assert list(progress(range(5), "asr/boost", every=0.0, stream=buf)) == list(range(5))
    text = buf.getvalue()
    assert "\r" not in text and text.splitlines()[-1].startswith("asr/boost: 5/5 samples")
    assert len(text.splitlines()) == 5  # 4 intermediate lines (every=0) and the final one


def test_relay_turns_progress_frames_into_lines():
    buf = io.StringIO()
    r = Relay(buf, tty=False, every=3600)
    r.feed("start\nbar 1%\rbar 2%\rbar 3%")
    r.feed("\rbar 100%\ndone\n")
    r.close()
    # the first frame, then nothing for an hour, then the frame that ends with a newline
    assert buf.getvalue().splitlines() == ["start", "bar 1%", "bar 100%", "done"]
    tty = io.StringIO()
    Relay(tty, tty=True).feed("a\rb\n")
    assert tty.getvalue() == "a\rb\n"


def test_demo_steps_resume_markers(tmp_path):
    """The demo recipe: align -> (Vanilla ASR / TTS) -> backbone-only SFT -> (Vanilla ASR / TTS) -> MCTP stages on
    the frozen SFT backbone -> every mode of the final checkpoint."""
    st = steps("boost", tmp_path / "a", tmp_path / "o", stage_steps=[5, 4, 3, 2])
    names = [s.name for s in st]
    assert names == ["corpus", "codec", "cache", "cache_sft", "demo_align", "eval_asr_demo_align",
                     "eval_tts_demo_align", "demo_sft", "eval_asr_demo_sft", "eval_tts_demo_sft", "demo_mctp_one",
                     "demo_mctp_all", "eval_sqa", "eval_sqa_trained", "eval_tts", "eval_asr", "eval_speed", "report"]
    by = {s.name: s for s in st}
    assert by["eval_tts"].done == tmp_path / "o" / "eval" / "tts" / "metrics.json"
    assert by["demo_sft"].done == tmp_path / "a" / "stages" / "demo" / "sft" / "final.ckpt"
    assert "+experiment=demo/mctp_one" in by["demo_mctp_one"].cmd and "trainer.max_steps=3" in by["demo_mctp_one"].cmd
    assert "task.modes=[vanilla,boost,turbo]" in by["eval_asr"].cmd
    assert f"ckpt_path={tmp_path / 'a' / 'stages' / 'demo' / 'mctp_all' / 'hf'}" in by["eval_asr"].cmd
    stage_asr = by["eval_asr_demo_sft"]
    assert "task.modes=[vanilla]" in stage_asr.cmd and "dataset.limit=30" not in stage_asr.cmd
    assert f"ckpt_path={tmp_path / 'a' / 'stages' / 'demo' / 'sft' / 'hf'}" in stage_asr.cmd
    assert stage_asr.done == tmp_path / "o" / "eval" / "stages" / "demo_sft" / "asr" / "metrics.json"
    assert "task.modes=[vanilla,boost,turbo,verified]" in by["eval_speed"].cmd
    assert {"task.stop=true", "task.batch=4"} <= set(by["eval_speed"].cmd)  # whole spoken answers
    trained = by["eval_sqa_trained"]  # spoken QA on questions trained in speech, spread over the training split
    assert f"dataset.path={tmp_path / 'a' / 'corpus' / 'sqa' / 'train.jsonl'}" in trained.cmd
    assert {"dataset.spread=true", "dataset.limit=30", "task.modes=[vanilla]"} <= set(trained.cmd) and trained.beside
    assert f"paths.artifacts_dir={tmp_path / 'a'}" in by["demo_align"].cmd
    assert by["report"].cmd[by["report"].cmd.index("--stage-names") + 1:][:4] == [
        "demo/align", "demo/sft", "demo/mctp_one", "demo/mctp_all"]
    # the evaluations run two at a time (--eval-jobs), in runs between the stages; speed and training alone
    runs = [[s.name for s in run] for run in batches(st)]
    assert ["eval_asr_demo_align", "eval_tts_demo_align"] in runs
    assert ["eval_sqa", "eval_sqa_trained", "eval_tts", "eval_asr"] in runs
    assert ["eval_speed"] in runs and ["demo_sft"] in runs and ["demo_mctp_one"] in runs
    # a step that may not run beside others (training) cuts a run
    assert [[s.name for s in r] for r in batches([by["eval_asr"], by["demo_sft"], by["eval_tts"]])] == [
        ["eval_asr"], ["demo_sft"], ["eval_tts"]]


def test_demo_refuses_eval_jobs_below_one(tmp_path, capsys):
    with pytest.raises(SystemExit):
        demo_main(["--eval-jobs", "0", "--dry-run", "--artifacts", str(tmp_path / "a"), "--out", str(tmp_path / "o")])
    assert "--eval-jobs must be at least 1" in capsys.readouterr().err


def test_demo_reference_recipe_and_limits(tmp_path):
    """--recipe reference keeps the method's order (boost_stage1..4; stage 1 checked in Vanilla mode); the limits
    apply to the per-stage evaluations too (same subsets); demo is Boost's recipe only."""
    st = steps("boost", tmp_path / "a", tmp_path / "o", recipe=recipe_for("boost", "reference"),
               limits={"asr": 30, "tts": 20}, stage_evals=("asr",))
    names = [s.name for s in st]
    assert names[4:10] == ["boost_stage1", "eval_asr_boost_stage1", "boost_stage2", "boost_stage3", "boost_stage4",
                           "eval_sqa"]
    assert "dataset.limit=30" in st[5].cmd and "dataset.limit=20" in st[names.index("eval_tts")].cmd
    assert [s.name for s in steps("plus", tmp_path / "a", tmp_path / "o")][4] == "plus_stage1"
    with pytest.raises(ValueError, match="boost variant only"):
        recipe_for("balance", "demo")


def test_spoken_qa_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    write_audio(tmp_path / "q1.wav", torch.from_numpy(speechlike(0.3, 0)), 16000)
    embedded = io.BytesIO()
    import soundfile as sf

    sf.write(embedded, speechlike(0.3, 1), 16000, format="WAV")
    table = pa.table({"id": ["q1", "q2"], "question": ["Capital of Greece?", "Seven times five?"],
                      "audio": [{"path": "q1.wav", "bytes": None}, {"path": "x.wav", "bytes": embedded.getvalue()}],
                      "answers": [["Athens"], ["thirty five", "35"]]})
    pq.write_table(table, tmp_path / "qa.parquet")
    s1, s2 = SpokenQA(tmp_path / "qa.parquet").samples()
    assert s1.audio == tmp_path / "q1.wav" and s1.answers == ("Athens",)
    assert s2.answers == ("thirty five", "35") and s2.audio.read_bytes() == embedded.getvalue()
    pq.write_table(pa.table({"question": ["no audio"], "answers": [["x"]]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="bad.parquet:row 0: needs 'audio' and 'answers'"):
        SpokenQA(tmp_path / "bad.parquet").samples()


def test_spoken_qa_parquet_without_pyarrow(tmp_path, monkeypatch):
    import builtins

    (tmp_path / "qa.parquet").write_bytes(b"PAR1")
    real = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError("no pyarrow")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(ImportError, match=r"pip install -e '.\[parquet\]'"):
        SpokenQA(tmp_path / "qa.parquet").samples()
