"""The whole `make demo` pipeline at tiny sizes, from an empty directory: corpus -> codec -> cache -> the demo
recipe's 4 stages (align, Vanilla ASR / TTS, backbone-only SFT, Vanilla ASR / TTS, MCTP stages) -> eval of the final
checkpoint (asr, tts, sqa, speed; Vanilla / Boost / Turbo) -> report; then a re-run that skips every finished step;
then the Plus variant (the reference's stage order) on the same corpus, codec and cache, whose report puts Boost's
ASR WER beside its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def demo(tmp_path: Path, *extra: str, out: str = "demo") -> subprocess.CompletedProcess:
    env = dict(os.environ, VITA_ROOT=str(tmp_path), WANDB_MODE="disabled", DS_ACCELERATOR="cpu")
    cmd = [sys.executable, "-m", "vita_audio.cli.demo", "--smoke", "--artifacts", str(tmp_path / "artifacts"),
           "--out", str(tmp_path / out), "--progress-every", "5", *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=840)


@pytest.mark.slow
def test_demo_pipeline_smoke(tmp_path):
    pytest.importorskip("hibari")
    pytest.importorskip("pocketsphinx")
    first = demo(tmp_path)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    out = tmp_path / "demo"
    for task in ("asr", "tts", "sqa", "speed"):
        doc = json.loads((out / "eval" / task / "metrics.json").read_text())
        assert doc["task"] == task
        want = {"vanilla", "boost", "turbo"} | ({"verified"} if task == "speed" else set())
        if task == "tts":  # beside free decoding: the input text forced into the answers' text chunks
            want |= {f"{m}_forced_text" for m in ("vanilla", "boost", "turbo")}
            assert "judge_wer_on_resynthesis" in doc  # the codec's resynthesis of the originals, judged
        assert set(doc["modes"]) == want, (task, doc["modes"].keys())
        # the decode option of issue 22: MCTP steps draft audio only, the backbone writes the text
        drafting = {doc["drafting"]} if task == "speed" else {doc["decodes"][m]["drafting"] for m in ("boost", "turbo")}
        assert drafting == {"audio"}, (task, drafting)
    codec = json.loads((tmp_path / "artifacts" / "codec" / "builtin_semantic" / "config.json").read_text())
    assert codec["kind"] == "semantic"  # the demo recipe's codec: the semantic built-in one
    report = (out / "report.md").read_text()
    for section in ("## Goals", "## Wall time per step", "## Training: validation loss", "## Quality per stage",
                    "## Quality per decode mode", "## Speed per decode mode", "## Listen"):
        assert section in report
    assert "| demo/mctp_all | " in report and "| demo/sft | " in report  # validation losses, per-stage quality
    for stage in ("demo_align", "demo_sft"):  # the intermediate stages that train the backbone, in Vanilla mode
        for task in ("asr", "tts"):
            doc = json.loads((out / "eval" / "stages" / stage / task / "metrics.json").read_text())
            assert set(doc["modes"]) == {"vanilla"} and doc["ckpt_path"].endswith(f"{stage.replace('_', '/')}/hf")
    assert "| asr | [input](wavs/" in report  # one example per task and mode
    assert "\r" not in first.stdout  # not a terminal: progress frames became lines
    assert f"report: {out / 'report.md'}" in first.stdout
    timings = json.loads((out / "timings.json").read_text())
    assert {"codec", "demo_sft", "demo_mctp_all", "eval_asr_demo_sft", "eval_speed"} <= set(timings)
    # the final evaluations but speed ran two at a time, each with its log; the total counts their wall time once
    final = ("eval_sqa", "eval_sqa_trained", "eval_tts", "eval_asr")
    assert set(timings["eval_sqa"]["beside"]) == set(final[1:]) and "beside" not in timings["eval_speed"]
    assert sum(timings[t]["counted"] for t in final) < sum(timings[t]["seconds"] for t in final)
    # spoken QA on questions trained in speech, beside the transfer split; the speed on whole answers
    trained = json.loads((out / "eval" / "sqa_trained" / "metrics.json").read_text())
    assert set(trained["modes"]) == {"vanilla"} and trained["dataset"].endswith("sqa/train.jsonl")
    assert "Questions trained in speech (" in report and "| short by | why (measured) |" in report
    assert json.loads((out / "eval" / "speed" / "metrics.json").read_text())["stop"] is True
    assert (out / "logs" / "eval_sqa.log").is_file() and "eval_sqa: started" in first.stdout

    again = demo(tmp_path)  # resumable: every step with an output marker is skipped
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    for name in ("demo_align", "eval_tts_demo_align", "demo_mctp_all", "eval_asr", "eval_speed"):
        assert f"[demo] {name}: already done" in again.stdout
    assert json.loads((out / "timings.json").read_text())["eval_speed"] == timings["eval_speed"]

    # reuses corpus, codec and cache; no per-stage evaluations (a shorter test)
    plus = demo(tmp_path, "--variant", "plus", "--stage-evals", "", out="demo_plus")
    assert plus.returncode == 0, plus.stdout[-4000:] + plus.stderr[-4000:]
    assert "[demo] plus_stage4: done" in plus.stdout and "eval_asr_plus_stage1" not in plus.stdout
    asr = json.loads((tmp_path / "demo_plus" / "eval" / "asr" / "metrics.json").read_text())
    assert set(asr["modes"]) == {"vanilla", "boost", "turbo"}
    boost_asr = json.loads((out / "eval" / "asr" / "metrics.json").read_text())
    plus_report = (tmp_path / "demo_plus" / "report.md").read_text()
    section = plus_report.split("## ASR per variant", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| ")}
    assert {"plus", "boost"} <= set(rows), section
    assert f"{100 * boost_asr['modes']['vanilla']['wer']:.1f}%" in rows["boost"], (rows, boost_asr["modes"])
