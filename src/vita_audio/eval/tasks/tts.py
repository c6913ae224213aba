"""TTS: speak each text, transcribe the speech with an independent ASR judge, score it against the text: WER over
the rows not in Chinese, CER over the Chinese rows, after one named normaliser.

Beside it, the judge on the original recordings (where the set has them): `judge_wer_on_original_audio` over the
samples with a readable original, and the model's figure over exactly those samples
(`judge_wer_on_baseline_samples`), so the comparison is like for like and separates the model from the judge. And
the judge on the codec's resynthesis of those originals (encode to codes, decode back: `judge_wer_on_resynthesis`),
the ceiling the model's speech can reach through this codec (`resynthesis=True`, models that read audio codes).

A sample without audio output is heard as "" (all deletions, `no_audio`); a text that cannot be prompted (empty) is
counted in `failed` and scored the same way. Neither leaves the denominator.

The answer's own text channel (the interleaved text the model writes before and between its audio chunks) is scored
against the input text too: `text_wer` (`text_cer` for Chinese rows) and `text_copied`, the share of answers whose
text is the input text after the normaliser (the model must copy it: speech that follows other text says something
else). With `force_text=True` every mode also runs with the input text forced into the answer's text chunks (the
model writes only the audio; `inference/forcing.py`), reported as an extra row `<mode>_forced_text` beside the free
one: its judge WER is the audio's alone, with the text right by construction.
"""

from __future__ import annotations

from collections.abc import Sequence

from vita_audio.audio.io import AudioError, read_audio, resample
from vita_audio.eval.adapters.sample import EvalSample
from vita_audio.eval.metrics import error_rate, language_metric, scores_by_language
from vita_audio.eval.normalize import get_normalizer
from vita_audio.eval.progress import progress
from vita_audio.eval.tasks.common import TaskResult, describe_modes, resolve_modes, save_wav
from vita_audio.eval.tasks.decode import SampleDecoder, speed_metrics
from vita_audio.inference.forcing import check_forcing
from vita_audio.inference.sampling import Sampling


def transcribe(judge, wav, sample_rate: int) -> str:
    """What the judge hears; "" for silent or empty audio (scored as all deletions, never skipped)."""
    rate = getattr(judge, "sample_rate", 16000)
    try:
        return judge.transcribe(resample(wav, sample_rate, rate) if sample_rate != rate else wav, rate)
    except AudioError:
        return ""


def judge_originals(judge, samples: Sequence[EvalSample]) -> tuple[list[int], list[str], int]:
    """(indices of the samples whose original recording the judge heard, what it heard, unreadable originals)."""
    rows, heard, unreadable = [], [], 0
    with_original = [(i, s) for i, s in enumerate(samples) if s.ref_audio is not None]
    for i, s in progress(with_original, "tts/judge originals"):
        try:
            wav, sr = read_audio(s.ref_audio)
        except AudioError:  # counted; the sample stays out of both sides of the comparison
            unreadable += 1
            continue
        rows.append(i)
        heard.append(transcribe(judge, wav, sr))
    return rows, heard, unreadable


def judge_resynthesis(judge, speech, samples: Sequence[EvalSample], rows: Sequence[int]) -> tuple[list[str], int]:
    """What the judge hears in the codec's resynthesis (tokenizer then detokenizer) of the originals of `rows`
    ("" for an original the codec cannot take: too short, unreadable; counted), and how many those were."""
    heard, failed = [], 0
    for i in progress(rows, "tts/judge resynthesis"):
        try:
            wav, sr = read_audio(samples[i].ref_audio)
            out, rate = speech.detokenizer.decode(speech.tokenizer.encode(wav, sr))
        except (AudioError, ValueError):
            heard.append("")
            failed += 1
            continue
        heard.append(transcribe(judge, out, rate))
    return heard, failed


def run_tts(speech, samples: Sequence[EvalSample], judge, modes: Sequence[str] = ("vanilla",),
            normalizer: str = "whisper_en", max_new_tokens: int = 512, sampling: Sampling | None = None,
            drafting: str | None = None, save_audio: int = 0, audio_dir: str | None = None,
            force_text: bool = False, resynthesis: bool = True, **_) -> TaskResult:
    """`save_audio`: the generated speech of the first so many samples per mode is written under `audio_dir`.
    `force_text`: also decode every mode with the input text forced into the answer's text chunks (rows
    `<mode>_forced_text`). `resynthesis`: also judge the codec's resynthesis of the originals (skipped, with the
    reason in `info.resynthesis`, for a model without an audio tokenizer and detokenizer)."""
    norm = get_normalizer(normalizer)  # an unknown name fails before any decoding
    decodes = resolve_modes(modes, speech.lm, drafting)
    if force_text:  # what forcing cannot honour fails before any decoding
        for decode in decodes.values():
            check_forcing(speech.lm, decode.verify)
    runs = [(mode, decode, False) for mode, decode in decodes.items()]
    runs += [(f"{mode}_forced_text", decode, True) for mode, decode in decodes.items()] if force_text else []
    decode_sample = SampleDecoder(speech, "tts", max_new_tokens, sampling)
    texts, languages = [s.text for s in samples], [s.language for s in samples]
    result = TaskResult("tts", info={"normalizer": normalizer, "samples": len(samples),
                                     "decodes": describe_modes(decodes), "force_text": bool(force_text)})
    base_rows, base_heard, unreadable = judge_originals(judge, samples)
    if base_rows:
        base = scores_by_language([texts[i] for i in base_rows], base_heard, [languages[i] for i in base_rows],
                                  normalizer)
        result.info.update({f"judge_{k}_on_original_audio": v for k, v in base.items()})
        result.info["baseline_samples"] = len(base_rows)
        can = getattr(speech, "tokenizer", None) is not None and getattr(speech, "detokenizer", None) is not None
        if resynthesis and can:
            heard, failed = judge_resynthesis(judge, speech, samples, base_rows)
            again = scores_by_language([texts[i] for i in base_rows], heard, [languages[i] for i in base_rows],
                                       normalizer)
            result.info.update({f"judge_{k}_on_resynthesis": v for k, v in again.items()})
            result.info["resynthesis"] = {"samples": len(base_rows), "failed": failed}
        else:
            result.info["resynthesis"] = "off" if not resynthesis else "no audio tokenizer / detokenizer"
    if unreadable:
        result.info["baseline_unreadable"] = unreadable
    for mode, decode, forced in runs:
        heard_all, done, no_audio = [], [], 0
        for i, s in enumerate(progress(samples, f"tts/{mode}")):
            d = decode_sample(s.text, decode, s.id, force_text=forced)
            done.append(d)
            wav, rate = (d.out.wav, d.out.sample_rate) if d.out is not None else (None, None)
            heard = transcribe(judge, wav, rate) if wav is not None else ""  # failed or silent: all deletions
            no_audio += d.out is not None and wav is None
            heard_all.append(heard)
            wav_path = save_wav(audio_dir, mode, s.id, wav, rate) if wav is not None and i < save_audio else None
            result.predictions.append({"mode": mode, "id": s.id, "language": s.language, "text": s.text,
                                       "judge_heard": heard, "metric": language_metric(s.language),
                                       "error_rate": error_rate(s.text, heard, s.language, normalizer),
                                       "generated_text": d.out.text if d.out is not None else "",
                                       "audio_seconds": wav.numel() / rate if wav is not None else 0.0,
                                       "wav": wav_path, "error": d.error})
        m = {f"judge_{k}": v for k, v in scores_by_language(texts, heard_all, languages, normalizer).items()}
        said = [d.out.text if d.out is not None else "" for d in done]  # the answers' text channel
        m.update({f"text_{k}": v for k, v in scores_by_language(texts, said, languages, normalizer).items()})
        m["text_copied"] = sum(norm(a) == norm(t) for a, t in zip(said, texts)) / len(texts) if texts else 0.0
        if base_rows:
            same = scores_by_language([texts[i] for i in base_rows], [heard_all[i] for i in base_rows],
                                      [languages[i] for i in base_rows], normalizer)
            m.update({f"judge_{k}_on_baseline_samples": v for k, v in same.items()})
        result.metrics[mode] = {**m, "failed": sum(d.out is None for d in done), "no_audio": no_audio,
                                **speed_metrics(done)}
    return result
