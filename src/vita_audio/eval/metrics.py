"""Error rates and the spoken-QA containment rule, each after a named normaliser (`eval/normalize.py`).

    wer(refs, hyps, normalizer)     corpus word error rate: total word edits / total reference words (jiwer)
    cer(refs, hyps, normalizer)     corpus character error rate over non-space characters (jiwer.cer)
    language_metric(language)       "cer" for languages written without spaces between words (Chinese), else "wer"
    scores_by_language(...)         one figure per metric over the rows of its languages: {"wer": ..., "cer": ...}
    contains_answer(pred, aliases)  the normalised prediction holds every word of some normalised alias

Per-sample and corpus figures go through the same functions with the same normaliser, so they always agree (a
one-sample corpus scores what its sample scores).
"""

from __future__ import annotations

from collections.abc import Sequence

import jiwer

from vita_audio.eval.normalize import get_normalizer

CHARACTER_LANGUAGES = frozenset({"zh"})  # scored per character (CER), as Seed-TTS-eval, AISHELL and WenetSpeech are


def _check(references: Sequence[str], hypotheses: Sequence[str]) -> None:
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")


def _rate(refs: list[str], hyps: list[str], measure) -> float:
    """`measure` (jiwer.wer / jiwer.cer) over the corpus; all-empty references: 0.0, or inf against any output."""
    if not any(refs):
        return 0.0 if not any(hyps) else float("inf")
    return float(measure(refs, hyps))


def wer(references: Sequence[str], hypotheses: Sequence[str], normalizer: str = "seed_tts") -> float:
    """Corpus WER after `normalizer`. An empty reference counts its hypothesis' words as insertions."""
    _check(references, hypotheses)
    norm = get_normalizer(normalizer)
    return _rate([norm(r) for r in references], [norm(h) for h in hypotheses], jiwer.wer)


def cer(references: Sequence[str], hypotheses: Sequence[str], normalizer: str = "seed_tts") -> float:
    """Corpus CER after `normalizer`, spaces removed (Chinese: one character = one token)."""
    _check(references, hypotheses)
    norm = get_normalizer(normalizer)

    def chars(text: str) -> str:
        return "".join(norm(text).split())

    return _rate([chars(r) for r in references], [chars(h) for h in hypotheses], jiwer.cer)


def language_metric(language: str) -> str:
    return "cer" if language in CHARACTER_LANGUAGES else "wer"


def error_rate(reference: str, hypothesis: str, language: str, normalizer: str) -> float | None:
    """One sample's WER or CER (by its language); None when the normalised reference is empty."""
    if not get_normalizer(normalizer)(reference):
        return None
    return (cer if language_metric(language) == "cer" else wer)([reference], [hypothesis], normalizer)


def scores_by_language(references: Sequence[str], hypotheses: Sequence[str], languages: Sequence[str],
                       normalizer: str) -> dict[str, float]:
    """{"wer": corpus WER of the word-spaced rows, "cer": corpus CER of the Chinese rows}, each present only when
    the set has such rows: a mixed set gets both, never one figure over both kinds of rows."""
    _check(references, hypotheses)
    out: dict[str, float] = {}
    for metric, measure in (("wer", wer), ("cer", cer)):
        rows = [i for i, lang in enumerate(languages) if language_metric(lang) == metric]
        if rows:
            out[metric] = measure([references[i] for i in rows], [hypotheses[i] for i in rows], normalizer)
    return out


def contains_answer(prediction: str, aliases: Sequence[str], normalizer: str = "whisper_en") -> bool:
    """Spoken-QA containment (spec section 7): after `normalizer`, the prediction contains every word of some
    alias. Whether numbers match as words or digits is the normaliser's rule: `whisper_en` writes "thirty five"
    as "35" and "nineteen forty five" as "1945"; `seed_tts` and `none` leave words as words."""
    norm = get_normalizer(normalizer)
    pred = set(norm(prediction).split())
    for alias in aliases:
        words = norm(alias).split()
        if words and all(w in pred for w in words):
            return True
    return False
