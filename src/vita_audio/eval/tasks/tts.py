"""TTS: speak each text, transcribe the speech with an independent ASR judge, WER against the text.

The judge's WER on the original recordings of the same utterances (where the set has them) is reported beside
it, so the figure separates the model from the judge. A sample without audio output is scored as all deletions.
"""

from __future__ import annotations

from collections.abc import Sequence

from vita_audio.audio.io import AudioError, read_audio, resample
from vita_audio.eval.adapters.sample import EvalSample
from vita_audio.eval.progress import progress
from vita_audio.eval.metrics import wer
from vita_audio.eval.normalize import get_normalizer
from vita_audio.eval.tasks.common import TaskResult, check_modes, decode_kwargs, save_wav, speed_metrics
from vita_audio.inference.api import SpeechLM
from vita_audio.inference.sampling import Sampling


def transcribe(judge, wav, sample_rate: int) -> str:
    """What the judge hears; "" for silent or empty audio (scored as all deletions, never skipped)."""
    rate = getattr(judge, "sample_rate", 16000)
    try:
        return judge.transcribe(resample(wav, sample_rate, rate) if sample_rate != rate else wav, rate)
    except AudioError:
        return ""


def run_tts(speech: SpeechLM, samples: Sequence[EvalSample], judge, modes: Sequence[str] = ("vanilla",),
            normalizer: str = "whisper_en", max_new_tokens: int = 512, sampling: Sampling | None = None,
            save_audio: int = 0, audio_dir: str | None = None, **_) -> TaskResult:
    """`save_audio`: the generated speech of the first so many samples per mode is written under `audio_dir`."""
    norm = get_normalizer(normalizer)
    modes = check_modes(modes, speech.lm.num_mctp_modules)
    result = TaskResult("tts", info={"normalizer": normalizer, "samples": len(samples)})
    originals = [s for s in samples if s.ref_audio is not None]
    if originals:
        heard = [transcribe(judge, *read_audio(s.ref_audio)) for s in progress(originals, "tts/judge originals")]
        result.info["judge_wer_on_original_audio"] = wer([norm(s.text) for s in originals], [norm(h) for h in heard],
                                                         normalize=False)
    for mode in modes:
        refs, hyps, done, failed = [], [], [], 0
        for i, s in enumerate(progress(samples, f"tts/{mode}")):
            out = speech.run("tts", s.text, max_new_tokens=max_new_tokens, sampling=sampling, **decode_kwargs(mode))
            done.append(out)
            heard = transcribe(judge, out.wav, out.sample_rate) if out.wav is not None else ""
            failed += out.wav is None
            wav_path = save_wav(audio_dir, mode, s.id, out.wav, out.sample_rate) if i < save_audio else None
            refs.append(norm(s.text))
            hyps.append(norm(heard))
            result.predictions.append({"mode": mode, "id": s.id, "text": s.text, "judge_heard": heard,
                                       "generated_text": out.text, "audio_seconds":
                                       out.wav.numel() / out.sample_rate if out.wav is not None else 0.0,
                                       "wer": wer([refs[-1]], [hyps[-1]], normalize=False) if refs[-1] else None,
                                       "wav": wav_path})
        result.metrics[mode] = {"judge_wer": wer(refs, hyps, normalize=False), "no_audio": failed,
                                **speed_metrics(done)}
    return result
