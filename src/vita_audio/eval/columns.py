"""What every metric column of an evaluation means: one meaning per name, the same in every task. metrics.md lists
the meaning of each column it shows (`markdown_table`); a test checks every column a task writes is here."""

from __future__ import annotations

COLUMNS: dict[str, str] = {
    # quality (asr, tts, sqa); error rates are after the run's normaliser (`normalizer` in metrics.json)
    "wer": "corpus word error rate (total word edits / total reference words) over the rows not in Chinese",
    "cer": "corpus character error rate (spaces removed) over the Chinese rows",
    "judge_wer": "the judge's WER on the generated speech against the text, rows not in Chinese",
    "judge_cer": "the judge's CER on the generated speech against the text, Chinese rows",
    "judge_wer_on_baseline_samples": "judge_wer over exactly the samples of `judge_wer_on_original_audio` (the "
                                     "ones with a readable original recording): the like-for-like comparison",
    "judge_cer_on_baseline_samples": "judge_cer over exactly the samples of `judge_cer_on_original_audio`",
    "s2t_accuracy": "share of questions whose text answer contains an accepted answer (containment, normaliser)",
    "s2s_accuracy": "share of questions whose spoken answer, as the judge hears it, contains an accepted answer",
    "t2t_accuracy": "share of questions whose text answer, with the question asked as text, contains an accepted "
                    "answer (T->T: what the model knows)",
    "t2t_failed": "text questions that could not be prompted: T->T misses, kept in the denominator",
    "tt_samples": "questions in the transfer split (rows marked transfer: facts taught as text only)",
    "tt_accuracy": "transfer split: T->T accuracy (the question asked as text)",
    "st_accuracy": "transfer split: S->T accuracy (the question spoken, text answer)",
    "ss_accuracy": "transfer split: S->S accuracy (the question spoken, the spoken answer as the judge hears it)",
    "st_accuracy_gap": "transfer split: tt_accuracy - st_accuracy, what asking in speech instead of text costs",
    **{f"{f}_accuracy_{kind}": f"transfer split: {f.upper()[0]}->{f.upper()[1]} accuracy over the {kind} questions"
       for f in ("tt", "st", "ss") for kind in ("open", "yesno")},
    # tts: the answer's own text channel against the input text
    "text_wer": "tts: WER of the answer's text channel (the interleaved text) against the input text",
    "text_cer": "tts: CER of the answer's text channel against the input text, Chinese rows",
    "text_copied": "tts: share of answers whose text channel is the input text after the normaliser",
    # asr by voice family (the corpus rows' "voice" up to its first "-": hibari, espeak)
    **{f"{m}_voice_{v}": f"asr: {m.upper()} over the rows spoken by the {v} voice(s)"
       for m in ("wer", "cer") for v in ("hibari", "espeak")},
    "failed": "samples whose input could not be prompted (unreadable, silent, too short for one audio code, empty "
              "text): scored as misses, kept in every denominator",
    "no_audio": "samples decoded without any audio output: heard as silence, scored as misses, kept in denominators",
    # speed of the generation tasks (eval/tasks/decode.py)
    "lm_tokens_per_s": "new tokens / seconds of LM decoding (prefill + steps); no input audio encoding, no output "
                       "audio synthesis",
    "e2e_tokens_per_s": "new tokens / seconds of the whole request: prompt building with input audio encoding, "
                        "decoding, output audio synthesis (the judge excluded)",
    "backbone_forwards_per_token": "backbone forwards / new tokens",
    "audio_token_share": "speed task: audio tokens (codes and the two audio markers) / new tokens",
    "backbone_forwards_per_audio_token": "speed task: audio tokens a backbone step emitted / audio tokens (Vanilla: 1)",
    "first_audio_s": "median seconds from the start of decoding to the first audio chunk (prompt building excluded)",
    # the speed task (eval/tasks/speed.py): TTS prompts, fixed-length decodes with no stop or (stop) whole answers;
    # no codec
    "tokens_per_s": "speed task: new tokens / seconds of LM decoding from building the Decoder to its last step "
                    "(no codec: the same measurement as lm_tokens_per_s); rows x new_tokens with no stop, or the "
                    "tokens of the whole answers with stop",
    "speedup_vs_vanilla": "speed task: tokens_per_s / Vanilla's, in the same round",
    "mctp_steps_per_token": "speed task: MCTP steps / new tokens",
    "first_chunk_s": "speed task: seconds to the first decodable audio chunk (the first audio span closed after a "
                     "code, or the 11th new token if that comes first), prefill included",
    "first_chunk_vs_vanilla": "speed task: first_chunk_s / Vanilla's",
    "ideal_speedup": "speed task: the speed-up the step counts allow with the measured MCTP / backbone step cost",
    "accepted": "speed task, verified mode: mean tokens kept per backbone forward",
    "tokens_per_answer": "speed task: new tokens per prompt (with stop: the mode's mean answer length)",
}


def legend(keys: list[str]) -> list[str]:
    """Markdown lines "- `key`: meaning" for the given columns."""
    return [f"- `{k}`: {COLUMNS[k]}" for k in keys if k in COLUMNS]
