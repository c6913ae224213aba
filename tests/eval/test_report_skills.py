"""The report's per-skill tables from fake metrics files: quality per stage, ASR by voice, TTS beside the codec's
resynthesis, SQA transfer keys, the ideal speed-up, one example per task and mode; ASR's by-voice figures."""

from __future__ import annotations

import json

import torch

from tests.audio.conftest import speechlike
from tests.eval.conftest import ScriptedSpeech
from vita_audio.audio.io import write_audio
from vita_audio.eval.adapters.sample import EvalSample
from vita_audio.eval.report import build_report
from vita_audio.eval.report_tables import stage_eval_dir
from vita_audio.eval.tasks import run_asr

STAGES = ["demo/align", "demo/sft", "demo/mctp_one", "demo/mctp_all"]


def write(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc) if isinstance(doc, dict) else "".join(json.dumps(r) + "\n" for r in doc))


def asr_doc(wer, hibari, espeak, modes=("vanilla",)):
    return {"task": "asr", "samples": 4, "voice_espeak_samples": 2, "voice_hibari_samples": 2,
            "modes": {m: {"wer": wer, "wer_voice_hibari": hibari, "wer_voice_espeak": espeak} for m in modes}}


def test_report_per_stage_by_voice_and_transfer(tmp_path):
    out, stages = tmp_path / "demo", tmp_path / "stages"
    modes = ("vanilla", "boost", "turbo")
    write(stage_eval_dir(out, "demo/align") / "asr" / "metrics.json", asr_doc(0.40, 0.30, 0.50))
    write(stage_eval_dir(out, "demo/align") / "tts" / "metrics.json",
          {"task": "tts", "modes": {"vanilla": {"judge_wer": 0.6, "judge_wer_on_baseline_samples": 0.55}}})
    write(stage_eval_dir(out, "demo/sft") / "asr" / "metrics.json", asr_doc(0.35, 0.25, 0.45))
    write(out / "eval" / "asr" / "metrics.json", asr_doc(0.36, 0.26, 0.46, modes))
    write(out / "eval" / "tts" / "metrics.json",
          {"task": "tts", "samples": 2, "baseline_samples": 2, "judge_wer_on_original_audio": 0.08,
           "judge_wer_on_resynthesis": 0.15,
           "modes": {**{m: {"judge_wer": 0.5, "judge_wer_on_baseline_samples": 0.2, "text_wer": 0.3}
                        for m in modes},
                     "vanilla_forced_text": {"judge_wer": 0.9, "judge_wer_on_baseline_samples": 0.9}}})
    write(out / "eval" / "sqa" / "metrics.json",
          {"task": "sqa", "samples": 60,
           "modes": {m: {"s2t_accuracy": 0.5, "s2s_accuracy": 0.4, "tt_accuracy": 0.9, "t2t_accuracy": 0.8,
                         "st_accuracy": 0.7, "ss_accuracy": 0.6, "tt_samples": 60} for m in modes}})
    write(out / "eval" / "speed" / "metrics.json",
          {"task": "speed", "modes": {"vanilla": {"tokens_per_s": 50.0, "speedup_vs_vanilla": 1.0,
                                                  "ideal_speedup": 1.0},
                                      "boost": {"tokens_per_s": 100.0, "speedup_vs_vanilla": 2.0,
                                                "ideal_speedup": 3.1}}})
    wav = tmp_path / "in.wav"
    write_audio(wav, torch.from_numpy(speechlike(0.3, 0)), 16000)
    write(out / "eval" / "asr" / "predictions.jsonl",
          [{"mode": m, "id": "test:1", "voice": "hibari", "audio": str(wav), "prediction": f"said {m}"}
           for m in modes])
    write(out / "eval" / "tts" / "predictions.jsonl", [{"mode": "boost", "id": "t:2", "wav": str(wav),
                                                        "text": "hello", "judge_heard": "hello"}])
    (stages / "demo" / "align").mkdir(parents=True)
    (stages / "demo" / "align" / "final_metrics.txt").write_text("val/loss\t1.9\nval/loss_main\t1.9\n")

    md = build_report(out, stages, stage_names=STAGES).read_text()
    # per stage: Vanilla ASR (all, espeak, hibari), TTS; the MCTP-only stage left out; the final row from eval/
    assert "| stage | ASR WER | ASR espeak | ASR hibari | TTS judge WER | TTS same sentences |" in md
    assert "| demo/align | 40.0% | 50.0% | 30.0% | 60.0% | 55.0% |" in md
    assert "| demo/sft | 35.0% | 45.0% | 25.0% | - | - |" in md
    assert "| demo/mctp_all | 36.0% | 46.0% | 26.0% | 50.0% | 20.0% |" in md and "| demo/mctp_one |" not in md
    assert "| demo/align | - | 1.900 | 1.900 |" in md  # the validation losses by stage name (no train/loss)
    # by voice, per mode, with the rows each voice has
    assert "| mode | all | espeak (2) | hibari (2) |" in md and "| turbo | 36.0% | 46.0% | 26.0% |" in md
    assert "`judge_wer_on_resynthesis` **15.0%**" in md and "**8.0%**" in md
    assert "| mode | S->T | S->S | T->T | no audio |" in md and "| boost | 50.0% | 40.0% | 80.0% | - |" in md
    assert "| mode | T->T accuracy | T->T samples | S->T accuracy | S->S accuracy |" in md
    assert "| boost | 90.0% | 60 | 70.0% | 60.0% |" in md
    # TTS: the text channel beside the speech; the forced-text row is shown but not judged by the goals
    assert "| vanilla_forced_text | 90.0% | 90.0% |" in md and "| boost | 50.0% | 20.0% | 30.0% |" in md
    assert "| TTS judge WER <= codec resynthesis (15.0%, `judge_wer_on_resynthesis`) + 10 points | yes |" in md
    assert "| SQA S->T >= 70% on the transfer split | yes |" in md
    assert "| x Vanilla | ideal x Vanilla (from step costs) |" in md and "| boost | 100.0 | 2.00 | 3.10 |" in md
    # one example per task and mode: ASR's input copied beside the report, TTS's wav where a mode has one
    assert "| asr | [input](wavs/asr_test%253A1.wav) (hibari) -> \"said vanilla\" |" in md
    assert (out / "wavs" / "asr_test%3A1.wav").is_file()
    assert "| tts | - | [listen](../in.wav): \"hello\" | - |" in md


def test_report_without_the_new_keys_says_not_measured(tmp_path):
    out = tmp_path / "demo"
    write(out / "eval" / "asr" / "metrics.json", {"task": "asr", "modes": {"vanilla": {"wer": 0.5}}})
    write(out / "eval" / "tts" / "metrics.json", {"task": "tts", "modes": {"vanilla": {"judge_wer": 0.5}}})
    write(out / "eval" / "sqa" / "metrics.json", {"task": "sqa", "modes": {"vanilla": {"s2t_accuracy": 0.5}}})
    md = build_report(out, tmp_path / "stages", stage_names=STAGES).read_text()
    assert "ASR by voice: not measured" in md and "resynthesis: not measured" in md
    assert "transfer split: not measured" in md and "| demo/mctp_all | 50.0% | 50.0% | - |" in md


def test_asr_wer_by_voice_family(world):
    """Rows naming their voice get `wer_voice_<family>` over that family alone; the espeak voices are one family."""
    root, speech = world[0], world[1]
    wav = root / "wavs" / "u0.wav"
    samples = [EvalSample("a", "seven times five", audio=wav, extra={"voice": "hibari"}),
               EvalSample("b", "hello there", audio=root / "wavs" / "u1.wav",
                          extra={"voice": "espeak-en-gb-x-rp-f4-s164-p49"}),
               EvalSample("c", "good day", audio=root / "wavs" / "u2.wav", extra={"voice": "espeak-en-us"})]
    scripted = ScriptedSpeech(speech, {str(wav): "seven times five", str(root / "wavs" / "u1.wav"): "hello there",
                                       str(root / "wavs" / "u2.wav"): "bad way"})
    res = run_asr(scripted, samples, modes=["vanilla"])
    m = res.metrics["vanilla"]
    assert m["wer_voice_hibari"] == 0.0 and m["wer_voice_espeak"] == 2 / 4 and m["wer"] == 2 / 7
    assert res.info["voice_hibari_samples"] == 1 and res.info["voice_espeak_samples"] == 2
    assert res.predictions[1]["voice"] == "espeak-en-gb-x-rp-f4-s164-p49" and res.predictions[0]["audio"] == str(wav)
    plain = run_asr(scripted, [EvalSample("a", "seven times five", audio=wav)], modes=["vanilla"])
    assert not [k for k in plain.metrics["vanilla"] if "voice" in k]
