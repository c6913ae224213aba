"""Why a goal of the demo is missed: the measured reasons, read from the files the pipeline wrote (the report's
"why (measured)" column; `report_goals.py` says which goals are missed and by how much).

    asr          errors by how often a test word was spoken in ASR training (predictions + the corpus's
                 asr/train.jsonl), WER by voice, stage 1's train / val loss (memorised or not)
    tts          the answer's own text (text channel WER, answers that copy their text) and TTS with the text
                 forced: whether the words or the audio for them fail
    sqa_st       T->T on the same questions (the facts known as text) and S->T on questions trained in speech
                 (`eval/sqa_trained`): whether the spoken-QA skill or the transfer fails
    near_*       the MCTP modules' validation loss against the backbone's and verified decoding's speed; for the
                 spoken-QA accuracies, first whether the difference is inside 2 standard errors on n questions (noise)
    speed_*      backbone forwards per token, the share of text in the timed tokens, r (an MCTP step over a
                 backbone step), the ideal speed-up and its bound at r = 0

Every reason is a figure of this run; a figure that was not measured leaves its reason out, never made up.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import jiwer

from vita_audio.data.records import SkipCounter, read_jsonl
from vita_audio.eval.normalize import get_normalizer
from vita_audio.eval.report_goals import SQA_ST_GOAL, TTS_MARGIN, value
from vita_audio.eval.report_tables import pct, resynthesis_keys

RARE = 50  # a test word spoken in fewer ASR training sentences than this is "rare"
LEARNED = 0.20  # trained spoken questions this much above the transfer split's S->T: the skill, not the transfer
RARER = 0.10  # rare words wrong this much more often than the others: "the words it misses are the rare ones"
TEXT_OK = 0.10  # a text channel WER above this: the answer does not say its input


def training_word_counts(corpus: Path, normalizer: str) -> Counter:
    """word -> the number of ASR training sentences (corpus asr/train.jsonl) it is spoken in, normalised. A line
    that is not a record with an assistant message is left out (the count of those is under the key None)."""
    norm = get_normalizer(normalizer)
    counts: Counter = Counter()
    skips = SkipCounter()
    for rec in read_jsonl(Path(corpus) / "asr" / "train.jsonl", on_error="skip", skips=skips,
                          check_audio_exists=False):
        answer = next((c for r, c in rec.messages if r == "assistant"), None)
        if answer is None:
            counts[None] += 1
            continue
        counts.update(set(norm(answer).split()))
    if skips.total():
        counts[None] += skips.total()
    return counts


def errors_by_frequency(predictions: list[dict], counts: Counter, mode: str = "vanilla",
                        rare: int = RARE) -> dict[str, tuple[int, int]]:
    """{"rare": (test words, of them substituted or deleted), "frequent": (...)} over `mode`'s ASR predictions
    (their normalised reference and prediction), a word being rare when spoken in fewer than `rare` training
    sentences."""
    out = {"rare": [0, 0], "frequent": [0, 0]}
    for row in predictions:
        if row.get("mode") != mode or row.get("reference_normalized") is None:
            continue
        words = row["reference_normalized"].split()
        hyp = " ".join((row.get("prediction_normalized") or "").split())
        if not words:
            continue
        wrong: set[int] = set()
        for chunk in jiwer.process_words(" ".join(words), hyp).alignments[0]:  # word i of `words` is jiwer's i
            if chunk.type in ("substitute", "delete"):
                wrong.update(range(chunk.ref_start_idx, chunk.ref_end_idx))
        for i, w in enumerate(words):
            bucket = out["rare" if counts[w] < rare else "frequent"]
            bucket[0] += 1
            bucket[1] += i in wrong
    return {k: (n, e) for k, (n, e) in out.items()}


def asr_reason(asr: dict | None, predictions: list[dict], corpus: Path | None,
               losses: dict[str, dict[str, float]]) -> str:
    parts = []
    if corpus and (Path(corpus) / "asr" / "train.jsonl").is_file() and predictions:
        by = errors_by_frequency(predictions, training_word_counts(corpus, (asr or {}).get("normalizer", "none")))
        (n_r, e_r), (n_f, e_f) = by["rare"], by["frequent"]
        if n_r and n_f:
            rates = (f"{n_r} of the {n_r + n_f} test words are spoken in fewer than {RARE} training sentences and "
                     f"{pct(e_r / n_r)} of them are wrong, against {pct(e_f / n_f)} of the others (Vanilla)")
            rare_first = e_r / n_r >= e_f / n_f + RARER
            parts.append(f"the words it misses are the rarely heard ones: {rates}" if rare_first else rates)
    voices = sorted((k.removeprefix("wer_voice_"), v) for k, v in (asr or {}).get("modes", {}).get("vanilla", {})
                    .items() if k.startswith("wer_voice_"))
    if len(voices) > 1:
        parts.append("by voice " + ", ".join(f"{v} {pct(w)}" for v, w in voices))
    name, first = next(iter(losses.items()), ("", {}))
    if "train" in first and "loss" in first:
        parts.append(f"{name} ends at train loss {first['train']:.2f} against val loss {first['loss']:.2f}")
    return "; ".join(parts)


def tts_reason(tts: dict | None, limit: float | None) -> str:
    """Vanilla's text channel (does the answer say its input?) and its TTS with the text forced against the goal's
    `limit` (the resynthesis WER + 10 points; None: unknown): the words or the audio for them."""
    text, copied = value(tts, "vanilla", "text_wer"), value(tts, "vanilla", "text_copied")
    forced = value(tts, "vanilla_forced_text", "judge_wer_on_baseline_samples")
    forced = value(tts, "vanilla_forced_text", "judge_wer") if forced is None else forced
    parts = []
    if text is not None:
        said = f"text channel WER {pct(text)}" + (f", {pct(copied)} of the answers copy their text"
                                                   if copied is not None else "")
        parts.append(f"Vanilla's answer does not say its input: {said}" if text > TEXT_OK else said)
    if forced is not None and limit is not None:
        parts.append(f"with the text forced the judge still hears {pct(forced)} WER: the audio written for a known "
                     "text fails too" if forced > limit else
                     f"with the text forced the judge hears {pct(forced)} WER, within the goal: the words fail, not "
                     "the audio")
    return "; ".join(parts)


def sqa_reason(sqa: dict | None, trained: dict | None, st_key: str) -> str:
    parts = []
    tt = value(sqa, "vanilla", "tt_accuracy" if st_key == "st_accuracy" else "t2t_accuracy")
    if tt is not None:
        parts.append(f"asked as text, the same questions get {pct(tt)} (T->T, Vanilla)")
    st_trained, st = value(trained, "vanilla", "s2t_accuracy"), value(sqa, "vanilla", st_key)
    if st_trained is not None:
        told = (f"questions trained in speech get {pct(st_trained)} S->T ({trained.get('samples')} of the training "
                "split)")
        if st is not None and st_trained - st >= LEARNED:
            parts.append(f"{told}: spoken QA is learned, but what was learned as text does not transfer to speech")
        elif st_trained < SQA_ST_GOAL:  # below the goal on questions it was taught: the skill is missing
            parts.append(f"{told}, below the goal on the questions it was taught: the spoken question itself is "
                         "not understood, before any transfer")
        else:
            parts.append(told)
    return "; ".join(parts)


def near_sqa_reason(doc: dict | None, key: str, mctp: str) -> str:
    """Boost / Turbo against Vanilla on accuracy `key`: noise when the widest difference is inside 2 standard errors
    of a difference of two accuracies near Vanilla's on n questions (the transfer split's `tt_samples` for its
    `st_` / `ss_` keys, else the task's samples), else the drafted audio (`mctp`, the TTS reason)."""
    acc = value(doc, "vanilla", key)
    n = value(doc, "vanilla", "tt_samples") if key.startswith(("st_", "ss_")) else None
    n = int(n or (doc or {}).get("samples") or 0)
    diffs = [abs(v - acc) for m in ("boost", "turbo") if acc is not None and (v := value(doc, m, key)) is not None]
    if acc is None or not n or not diffs:
        return ""
    se = math.sqrt(2 * max(acc * (1 - acc), 1 / n) / n)  # of a difference of two independent accuracies
    noise = (f"on {n} questions the standard error of a difference of two accuracies near {pct(acc)} is about "
             f"{100 * se:.1f} points")
    if max(diffs) <= 2 * se:
        return f"within noise: {noise}"
    return f"beyond noise ({noise})" + (f": {mctp}" if mctp else "")


def mctp_reason(losses: dict[str, dict[str, float]], speed: dict | None) -> str:
    parts = []
    last = next(reversed(losses.values()), {}) if losses else {}
    mctp = [v for k, v in last.items() if k.startswith("mctp_")]
    if mctp and "main" in last:
        parts.append(f"the MCTP modules draft the audio at val loss {min(mctp):.2f}-{max(mctp):.2f} against the "
                     f"backbone's {last['main']:.2f}")
    v = value(speed, "verified", "speedup_vs_vanilla")
    if v is not None:
        parts.append(f"verified decoding, which checks every draft with the backbone, runs at {v:.2f}x Vanilla's "
                     "speed")
    return "; ".join(parts)


def speed_reason(speed: dict | None, mode: str, want: float) -> str:
    """Why `mode` misses `want` x Vanilla: the backbone forwards it still runs, r, the ideal speed-up, and the r
    that `want` would need at these forwards and MCTP steps per token."""
    f, share = value(speed, mode, "backbone_forwards_per_token"), value(speed, mode, "audio_token_share")
    r, ideal = value(speed, mode, "mctp_over_backbone_step"), value(speed, mode, "ideal_speedup")
    steps = value(speed, mode, "mctp_steps_per_token")
    parts = []
    if f:
        parts.append(f"the backbone still runs {f:.2f} forwards per token"
                     + (f" ({pct(1 - share)} of the timed tokens are text, which the backbone writes)"
                        if share is not None else "") + f", so even a free MCTP step gives at most {1 / f:.2f}x")
    if r is not None and ideal is not None:
        parts.append(f"an MCTP step costs {r:.2f} of a backbone step: ideal {ideal:.2f}x")
        if f and steps and 1 / f > want:
            parts.append(f"{want:g}x would need an MCTP step of at most {(1 / want - f) / steps:.2f} of a backbone "
                         "step, and every backbone forward as cheap as a single-token step")
    return "; ".join(parts)


def reasons(asr: dict | None, tts: dict | None, sqa: dict | None, speed: dict | None, *,
            asr_predictions: list[dict] | None = None, sqa_trained: dict | None = None,
            losses: dict[str, dict[str, float]] | None = None, corpus: Path | None = None,
            st_key: str = "st_accuracy") -> dict[str, str]:
    """goal key (`report_goals.Goal.key`) -> its measured reasons, for every goal a reason can be read for."""
    losses = losses or {}
    resynth = resynthesis_keys(tts or {})
    tts_limit = tts[resynth[0]] + TTS_MARGIN if resynth else None
    ss_key = st_key.replace("st_", "ss_").replace("s2t_", "s2s_")
    mctp = mctp_reason(losses, speed)
    out = {"asr": asr_reason(asr, asr_predictions or [], corpus, losses), "tts": tts_reason(tts, tts_limit),
           "sqa_st": sqa_reason(sqa, sqa_trained, st_key), "near_tts": mctp,
           "near_sqa_st": near_sqa_reason(sqa, st_key, mctp), "near_sqa_ss": near_sqa_reason(sqa, ss_key, mctp),
           "speed_boost": speed_reason(speed, "boost", 2.0), "speed_turbo": speed_reason(speed, "turbo", 2.5)}
    return {k: v for k, v in out.items() if v}
