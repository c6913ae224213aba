"""ASR: transcribe each sample's audio; WER over the rows not in Chinese and CER over the Chinese rows (a mixed set
reports both, each over its own rows), after one named normaliser used for every figure, per sample and corpus.

The generation length is a fixed budget (`max_new_tokens`), never taken from the reference transcript. A sample
whose audio cannot be prompted (unreadable, silent, too short for one audio code) is counted in `failed` and scored
as an empty transcript (all deletions): it stays in the denominator.

By voice: where the samples name the voice that spoke them (`EvalSample.extra["voice"]`, e.g. the corpus's
"hibari" or "espeak-en-gb-x-rp-f4-s164-p49"), every mode also gets `wer_voice_<family>` (and `cer_voice_<family>`
for Chinese rows) over that family's rows alone, the family being the voice name up to its first "-" ("hibari",
"espeak"); `voice_<family>_samples` counts them. Samples without a voice are in the overall figures only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from vita_audio.eval.adapters.sample import EvalSample
from vita_audio.eval.metrics import error_rate, language_metric, scores_by_language
from vita_audio.eval.normalize import get_normalizer
from vita_audio.eval.progress import progress
from vita_audio.eval.tasks.common import TaskResult, describe_modes, resolve_modes
from vita_audio.eval.tasks.decode import SampleDecoder, speed_metrics
from vita_audio.inference.sampling import Sampling


def voice_family(voice: str | None) -> str | None:
    """A voice's family: its name up to the first "-" (espeak-en-gb-x-rp-f4-s164-p49 -> espeak); None without one."""
    if not voice:
        return None
    return str(voice).split("-", 1)[0].strip().lower() or None


def scores_by_voice(refs: Sequence[str], hyps: Sequence[str], languages: Sequence[str], families: Sequence[str | None],
                    normalizer: str) -> dict[str, float]:
    """{"wer_voice_<family>": ..., "cer_voice_<family>": ...} over each voice family's rows."""
    out: dict[str, float] = {}
    for fam in sorted({f for f in families if f}):
        rows = [i for i, f in enumerate(families) if f == fam]
        scores = scores_by_language([refs[i] for i in rows], [hyps[i] for i in rows], [languages[i] for i in rows],
                                    normalizer)
        out.update({f"{metric}_voice_{fam}": v for metric, v in scores.items()})
    return out


def run_asr(speech, samples: Sequence[EvalSample], modes: Sequence[str] = ("vanilla",),
            normalizer: str = "whisper_en", max_new_tokens: int = 128, sampling: Sampling | None = None,
            drafting: str | None = None, **_) -> TaskResult:
    norm = get_normalizer(normalizer)
    decodes = resolve_modes(modes, speech.lm, drafting)
    decode_sample = SampleDecoder(speech, "asr", max_new_tokens, sampling)
    refs, languages = [s.text for s in samples], [s.language for s in samples]
    rows = Counter(language_metric(lang) for lang in languages)
    families = [voice_family(s.extra.get("voice")) for s in samples]
    voices = Counter(f for f in families if f)
    result = TaskResult("asr", info={"normalizer": normalizer, "samples": len(samples),
                                     **{f"{m}_samples": n for m, n in sorted(rows.items())},
                                     **{f"voice_{f}_samples": n for f, n in sorted(voices.items())},
                                     "decodes": describe_modes(decodes)})
    for mode, decode in decodes.items():
        hyps, done = [], []
        for s in progress(samples, f"asr/{mode}"):
            d = decode_sample(s.audio, decode, s.id)
            done.append(d)
            hyps.append(d.out.text if d.out is not None else "")
            result.predictions.append({"mode": mode, "id": s.id, "language": s.language, "voice": s.extra.get("voice"),
                                       "audio": str(s.audio) if s.audio else None, "reference": s.text,
                                       "prediction": hyps[-1], "reference_normalized": norm(s.text),
                                       "prediction_normalized": norm(hyps[-1]),
                                       "metric": language_metric(s.language),
                                       "error_rate": error_rate(s.text, hyps[-1], s.language, normalizer),
                                       "error": d.error})
        result.metrics[mode] = {**scores_by_language(refs, hyps, languages, normalizer),
                                **scores_by_voice(refs, hyps, languages, families, normalizer),
                                "failed": sum(d.out is None for d in done), **speed_metrics(done)}
    return result
