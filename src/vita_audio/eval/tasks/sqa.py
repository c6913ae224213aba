"""Spoken QA: answer each spoken question, and the same question asked as text; containment accuracy (spec
section 7, after the task's normaliser) per decode mode.

Over every scored question:

    s2t_accuracy   spoken question -> the text answer contains an accepted answer (S->T)
    s2s_accuracy   spoken question -> the spoken answer, as the ASR judge hears it, contains one (S->S)
    t2t_accuracy   the same question as TEXT (the sample's `question`, prompted as the corpus's text QA rows: the
                   user turn is the question) -> the text answer contains one (T->T)

Over the transfer split, the questions whose row says `transfer: true` (the offline corpus's val / test: each asks
about a fact the model learned from text only, never asked in speech in training, `data/corpus/facts.py`):

    tt_accuracy    T->T: what the model knows of those facts, speech taken out
    st_accuracy    S->T: how much of it the model can use when the question is spoken
    ss_accuracy    S->S: how much of it the model can also say (as the judge hears it)
    st_accuracy_gap  tt_accuracy - st_accuracy: what asking in speech instead of text costs, same questions
    {tt,st,ss}_accuracy_{open,yesno}  the same over the open / yes-no questions, when the split has both (a
                   question is yes/no when its row says `kind: yesno`, or when its first accepted answer is yes or
                   no); on the corpus half are yes/no with balanced answers (chance 50 %), half open with a one-word
                   answer out of 10 values of its relation (chance about 10 %)
    tt_samples     questions in the transfer split

T->T is asked when `text_questions` is on and every scored question has a text (else `info.t2t` says why not).
A sample without accepted answers cannot be scored: it is skipped and counted (`info.skipped_no_answers`). A
spoken answer without audio is wrong for S->S and stays in the denominator (`no_audio`); a question whose audio
cannot be prompted (unreadable, silent, too short for one audio code) is wrong for S->T and S->S (`failed`), a
text question the model cannot be prompted with is wrong for T->T (`t2t_failed`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from vita_audio.eval.adapters.sample import EvalSample
from vita_audio.eval.metrics import contains_answer
from vita_audio.eval.normalize import get_normalizer
from vita_audio.eval.progress import progress
from vita_audio.eval.tasks.common import TaskResult, describe_modes, resolve_modes, save_wav
from vita_audio.eval.tasks.decode import SampleDecoder, sample_sampling, speed_metrics
from vita_audio.eval.tasks.tts import transcribe
from vita_audio.inference.sampling import Sampling
from vita_audio.inference.schedule import Decode
from vita_audio.inference.stream import Finished, collect, stream

log = logging.getLogger(__name__)
KINDS = ("open", "yesno")


def question_kind(sample: EvalSample, normalizer: str) -> str:
    """"yesno" or "open": the row's `kind` when it has one, else yes/no when the first accepted answer is yes or no
    (the corpus accepts "no" or "not" for a no)."""
    kind = sample.extra.get("kind")
    if kind in KINDS:
        return kind
    return "yesno" if get_normalizer(normalizer)(sample.answers[0]) in ("yes", "no") else "open"


def ask_in_text(speech, question: str, decode: Decode, sampling: Sampling, max_new_tokens: int) -> Finished:
    """`question` as text (user turn = the question, as in the corpus's text QA rows), decoded in `decode`'s mode;
    no detokenizer: only the text of the answer is scored."""
    ids = speech.prompts.generation_prompt([("user", question)])
    return collect(stream(speech.lm, ids, None, schedule=decode.schedule, verify=decode.verify,
                          drafting=decode.drafting, max_new_tokens=max_new_tokens, sampling=sampling))


def accuracies(rows: list[dict], t2t: bool) -> dict[str, float]:
    """The accuracy figures of one mode's predictions (module docstring)."""
    def share(part: list[dict], fig: str) -> float:
        return sum(r[fig] for r in part) / max(len(part), 1)

    figs = ("s2t", "s2s", "t2t") if t2t else ("s2t", "s2s")
    out = {f"{f}_accuracy": share(rows, f) for f in figs}
    transfer = [r for r in rows if r["transfer"]]
    if not transfer:
        return out
    short = {"s2t": "st", "s2s": "ss", "t2t": "tt"}
    out.update({f"{short[f]}_accuracy": share(transfer, f) for f in figs})
    out["tt_samples"] = len(transfer)
    if t2t:
        out["st_accuracy_gap"] = out["tt_accuracy"] - out["st_accuracy"]
    if len({r["kind"] for r in transfer}) > 1:
        for kind in KINDS:
            part = [r for r in transfer if r["kind"] == kind]
            out.update({f"{short[f]}_accuracy_{kind}": share(part, f) for f in figs})
    return out


def run_sqa(speech, samples: Sequence[EvalSample], judge, modes: Sequence[str] = ("vanilla",),
            normalizer: str = "whisper_en", max_new_tokens: int = 512, sampling: Sampling | None = None,
            drafting: str | None = None, save_audio: int = 0, audio_dir: str | None = None,
            text_questions: bool = True, text_max_new_tokens: int = 64, **_) -> TaskResult:
    """`save_audio`: the spoken answers to the first so many questions per mode are written under `audio_dir`.
    `text_questions`: also ask each question as text (T->T), answered in at most `text_max_new_tokens` tokens."""
    get_normalizer(normalizer)  # an unknown name fails before any decoding
    decodes = resolve_modes(modes, speech.lm, drafting)
    scored = [s for s in samples if s.answers]
    skipped = len(samples) - len(scored)
    if skipped:
        log.warning("sqa: %d of %d samples have no accepted answers: skipped (counted in skipped_no_answers)",
                    skipped, len(samples))
    if samples and not scored:
        raise ValueError(f"sqa: none of the {len(samples)} samples has accepted answers ('answers'): nothing to score")
    kinds = [question_kind(s, normalizer) for s in scored]
    no_text = sum(not str(s.extra.get("question") or "").strip() for s in scored)
    t2t = text_questions and bool(scored) and no_text == 0
    info = {"rule": "containment (spec section 7)", "normalizer": normalizer, "samples": len(scored),
            "skipped_no_answers": skipped, **{f"{k}_samples": kinds.count(k) for k in KINDS},
            "t2t": "asked" if t2t else ("off (text_questions=false)" if not text_questions
                                        else f"not asked: {no_text} samples have no question text")}
    decode_sample = SampleDecoder(speech, "s2s", max_new_tokens, sampling)
    result = TaskResult("sqa", info={**info, "decodes": describe_modes(decodes)})
    for mode, decode in decodes.items():
        no_audio = t2t_failed = 0
        done, rows = [], []
        for i, s in enumerate(progress(scored, f"sqa/{mode}")):
            d = decode_sample(s.audio, decode, s.id)
            done.append(d)
            row = {"mode": mode, "id": s.id, "kind": kinds[i], "transfer": s.extra.get("transfer") is True,
                   "answers": list(s.answers), "question": s.extra.get("question"), "question_audio": str(s.audio),
                   "s2t": False, "s2s": False, "error": d.error}
            if d.out is not None:
                out = d.out
                heard = transcribe(judge, out.wav, out.sample_rate) if out.wav is not None else ""
                no_audio += out.wav is None
                wav_path = save_wav(audio_dir, mode, s.id, out.wav, out.sample_rate) if i < save_audio else None
                row.update(text=out.text, judge_heard=heard, wav=wav_path,
                           s2t=contains_answer(out.text, s.answers, normalizer),
                           s2s=contains_answer(heard, s.answers, normalizer))
            if t2t:
                try:
                    answer = ask_in_text(speech, s.extra["question"], decode,
                                         sample_sampling(sampling, f"{s.id}:text"), text_max_new_tokens).text
                except ValueError as err:
                    t2t_failed += 1
                    answer, row["t2t_error"] = "", f"{type(err).__name__}: {err}"
                row.update(text_answer=answer, t2t=contains_answer(answer, s.answers, normalizer))
            rows.append(row)
        result.predictions += rows
        result.metrics[mode] = {**accuracies(rows, t2t), "failed": sum(d.out is None for d in done),
                                "no_audio": no_audio, **({"t2t_failed": t2t_failed} if t2t else {}),
                                **speed_metrics(done)}
    return result
