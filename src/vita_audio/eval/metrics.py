"""Text normalisation and error rates (English). Normalisation: lower-case, punctuation stripped except
apostrophes inside words, whitespace collapsed. Stated with every number we report."""

from __future__ import annotations

import re
import unicodedata

import jiwer

_PUNCT = re.compile(r"[^\w\s']|_")
_LONE_APOS = re.compile(r"(?<!\w)'|'(?!\w)")


def normalize_en(text: str) -> str:
    """'Hello, World!  It's  \"ok\".' -> "hello world it's ok"."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    text = _PUNCT.sub(" ", text)
    text = _LONE_APOS.sub(" ", text)
    return " ".join(text.split())


def wer(references: list[str], hypotheses: list[str], normalize: bool = True) -> float:
    """Corpus word error rate (total edits / total reference words) after `normalize_en`.

    An empty reference with a non-empty hypothesis counts its insertions; all-empty references give 0.0 if the
    hypotheses are empty too."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [normalize_en(r) if normalize else r for r in references]
    hyps = [normalize_en(h) if normalize else h for h in hypotheses]
    n_ref = sum(len(r.split()) for r in refs)
    if n_ref == 0:
        return 0.0 if all(not h.split() for h in hyps) else float("inf")
    pairs = [(r, h) for r, h in zip(refs, hyps) if r.split()]
    edits = sum(len(h.split()) for r, h in zip(refs, hyps) if not r.split())  # insertions against empty refs
    if pairs:
        out = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
        edits += out.substitutions + out.deletions + out.insertions
    return edits / n_ref


def cer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus character error rate over non-space characters (Chinese: one character = one token), after
    `seed_tts`-style punctuation stripping."""
    from vita_audio.eval.normalize import normalize_seed_tts

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [" ".join(normalize_seed_tts(r).replace(" ", "")) for r in references]
    hyps = [" ".join(normalize_seed_tts(h).replace(" ", "")) for h in hypotheses]
    return wer(refs, hyps, normalize=False)


def contains_answer(prediction: str, aliases: list[str]) -> bool:
    """Spoken-QA containment (spec section 7): the normalised prediction contains every word of some alias.
    Numbers match as words or digits ("thirty five" == "35")."""
    from vita_audio.eval.normalize import normalize_seed_tts, words_to_digits

    pred = set(words_to_digits(normalize_seed_tts(prediction)).split())
    for alias in aliases:
        words = words_to_digits(normalize_seed_tts(alias)).split()
        if words and all(w in pred for w in words):
            return True
    return False
