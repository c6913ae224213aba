"""The measured reasons of a missed goal (eval/report_diagnosis.py), from metrics and predictions the test writes."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from vita_audio.eval.report import build_report
from vita_audio.eval.report_diagnosis import errors_by_frequency, reasons, training_word_counts


def asr_row(mode, ref, hyp):
    return {"mode": mode, "reference_normalized": ref, "prediction_normalized": hyp}


def write_corpus(root, sentences):
    (root / "asr").mkdir(parents=True)
    rows = [{"messages": [{"role": "user", "content": "Convert the speech to text.\n<|audio|>"},
                          {"role": "assistant", "content": s}], "audios": ["x.wav"], "task": "asr"} for s in sentences]
    (root / "asr" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_training_word_counts_count_sentences_not_occurrences(tmp_path):
    write_corpus(tmp_path, ["Anna lives in Paris.", "Anna, Anna!", "Ben lives in Rome."])
    counts = training_word_counts(tmp_path, "whisper_en")
    assert counts["anna"] == 2 and counts["lives"] == 2 and counts["rome"] == 1 and counts["tokyo"] == 0


def test_errors_by_frequency_splits_substitutions_and_deletions_by_how_often_a_word_was_heard():
    counts = Counter({"anna": 60, "lives": 80, "in": 90, "paris": 3})
    preds = [asr_row("vanilla", "anna lives in paris", "anna lives in london"),  # paris substituted
             asr_row("vanilla", "anna lives in tokyo", "anna lives"),  # in, tokyo deleted
             asr_row("boost", "anna lives in paris", "")]  # another mode: left out
    by = errors_by_frequency(preds, counts, "vanilla", rare=50)
    assert by == {"rare": (2, 2), "frequent": (6, 1)}


def test_reasons_read_every_figure_and_leave_out_what_was_not_measured(tmp_path):
    write_corpus(tmp_path, ["anna lives in paris"] * 60 + ["tokyo"])
    asr = {"normalizer": "whisper_en", "modes": {"vanilla": {"wer": 0.4, "wer_voice_espeak": 0.6,
                                                             "wer_voice_hibari": 0.3}}}
    preds = [asr_row("vanilla", "anna lives in tokyo", "anna lives in paris")]
    tts = {"judge_wer_on_resynthesis": 0.138,
           "modes": {"vanilla": {"judge_wer": 0.7, "text_wer": 0.36, "text_copied": 0.0},
                     "vanilla_forced_text": {"judge_wer": 0.645}}}
    sqa = {"samples": 60, "modes": {"vanilla": {"st_accuracy": 0.1, "tt_accuracy": 0.733, "ss_accuracy": 0.05}}}
    trained = {"samples": 30, "modes": {"vanilla": {"s2t_accuracy": 0.2}}}
    speed = {"modes": {"boost": {"backbone_forwards_per_token": 0.4, "audio_token_share": 0.8,
                                 "mctp_over_backbone_step": 0.25, "ideal_speedup": 1.8, "mctp_steps_per_token": 0.6},
                       "verified": {"speedup_vs_vanilla": 0.6}}}
    losses = {"demo/align": {"train": 0.69, "loss": 1.52},
              "demo/mctp_all": {"main": 1.67, "mctp_0": 2.6, "mctp_1": 2.9, "loss": 4.5}}
    why = reasons(asr, tts, sqa, speed, asr_predictions=preds, sqa_trained=trained, losses=losses, corpus=tmp_path)
    assert "1 of the 4 test words are spoken in fewer than 50 training sentences and 100.0% of them are wrong, " \
           "against 0.0% of the others" in why["asr"]
    assert "by voice espeak 60.0%, hibari 30.0%" in why["asr"] and "train loss 0.69 against val loss 1.52" in why["asr"]
    assert "text channel WER 36.0%, 0.0% of the answers copy their text" in why["tts"] and "64.5% WER" in why["tts"]
    assert "73.3% (T->T" in why["sqa_st"] and "get 20.0% S->T (30 of the training split), below the goal on the " \
        "questions it was taught: the spoken question itself is not understood" in why["sqa_st"]
    learned = reasons(None, None, sqa, None, sqa_trained={"samples": 30, "modes": {"vanilla": {"s2t_accuracy": 0.7}}})
    assert "get 70.0% S->T (30 of the training split): spoken QA is learned, but what was learned as text does " \
        "not transfer" in learned["sqa_st"]
    assert "val loss 2.60-2.90 against the backbone's 1.67" in why["near_tts"] and "0.60x" in why["near_tts"]
    assert "near_sqa_st" not in why  # no Boost / Turbo figure to compare
    sqa["modes"] |= {"boost": {"st_accuracy": 0.15, "ss_accuracy": 0.05}, "turbo": {"st_accuracy": 0.1,
                                                                                    "ss_accuracy": 0.25}}
    why = reasons(asr, tts, sqa, speed, asr_predictions=preds, sqa_trained=trained, losses=losses, corpus=tmp_path)
    assert why["near_sqa_st"] == "within noise: on 60 questions the standard error of a difference of two " \
        "accuracies near 10.0% is about 5.5 points"  # 5 points <= 2 x 5.5
    assert why["near_sqa_ss"].startswith("beyond noise (on 60 questions the standard error of a difference of two "
                                         "accuracies near 5.0% is about 4.0 points): the MCTP modules draft the "
                                         "audio")  # 20 > 2 x 4.0
    assert "0.40 forwards per token (20.0% of the timed tokens are text" in why["speed_boost"]
    assert "at most 2.50x" in why["speed_boost"] and "ideal 1.80x" in why["speed_boost"]
    assert "2x would need an MCTP step of at most 0.17 of a backbone step" in why["speed_boost"]  # (0.5 - 0.4) / 0.6
    assert "speed_turbo" not in why  # no Turbo figures: no reason made up
    assert reasons(None, None, None, None) == {}


@pytest.mark.parametrize("wer", [0.10, 0.40])
def test_report_shows_the_reason_only_for_a_missed_goal(tmp_path, wer):
    out, stages = tmp_path / "demo", tmp_path / "stages"
    (out / "eval" / "asr").mkdir(parents=True)
    (out / "eval" / "asr" / "metrics.json").write_text(json.dumps(
        {"task": "asr", "normalizer": "none", "samples": 1,
         "modes": {"vanilla": {"wer": wer, "wer_voice_espeak": 0.6, "wer_voice_hibari": 0.3}}}))
    md = build_report(out, stages).read_text()
    row = next(line for line in md.splitlines() if line.startswith("| ASR WER <= 15% |"))
    if wer <= 0.15:
        assert row.endswith("| yes | vanilla 10.0% | - |  |")
    else:
        assert "| **no** | vanilla 40.0% | 25.0 points over | by voice espeak 60.0%, hibari 30.0% |" in row


def test_reasons_do_not_blame_what_the_figures_clear(tmp_path):
    """Each conclusion is drawn only when its figures show it: rare words no worse, a text channel that says its
    input, forced text within the goal, trained spoken questions at the goal."""
    write_corpus(tmp_path, ["anna lives in paris"] * 60 + ["tokyo"])
    asr = {"normalizer": "whisper_en", "modes": {"vanilla": {"wer": 0.4}}}
    preds = [asr_row("vanilla", "anna lives in tokyo", "bob lives in tokyo")]  # the frequent word is the one missed
    tts = {"judge_wer_on_resynthesis": 0.10, "modes": {"vanilla": {"judge_wer": 0.5, "text_wer": 0.0,
                                                                   "text_copied": 1.0},
                                                       "vanilla_forced_text": {"judge_wer": 0.15}}}
    sqa = {"samples": 60, "modes": {"vanilla": {"st_accuracy": 0.6, "tt_accuracy": 0.8}}}
    trained = {"samples": 30, "modes": {"vanilla": {"s2t_accuracy": 0.75}}}
    why = reasons(asr, tts, sqa, None, asr_predictions=preds, sqa_trained=trained, corpus=tmp_path)
    assert why["asr"].startswith("1 of the 4 test words are spoken in fewer than 50") and "rarely" not in why["asr"]
    assert why["tts"] == "text channel WER 0.0%, 100.0% of the answers copy their text; with the text forced the " \
        "judge hears 15.0% WER, within the goal: the words fail, not the audio"
    assert why["sqa_st"].endswith("questions trained in speech get 75.0% S->T (30 of the training split)")
    low = reasons(None, None, sqa, None, sqa_trained={"samples": 30, "modes": {"vanilla": {"s2t_accuracy": 0.65}}})
    assert "below the goal on the questions it was taught" in low["sqa_st"]
