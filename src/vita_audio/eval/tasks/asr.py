"""ASR: transcribe each sample's audio; WER (English) or CER (Chinese) after a named normaliser.

The generation length is a fixed budget (`max_new_tokens`), never taken from the reference transcript.
"""

from __future__ import annotations

from collections.abc import Sequence

from vita_audio.audio.io import AudioError
from vita_audio.eval.adapters.sample import EvalSample
from vita_audio.eval.progress import progress
from vita_audio.eval.metrics import cer, wer
from vita_audio.eval.normalize import get_normalizer
from vita_audio.eval.tasks.common import TaskResult, check_modes, decode_kwargs, speed_metrics
from vita_audio.inference.api import SpeechLM
from vita_audio.inference.sampling import Sampling


def run_asr(speech: SpeechLM, samples: Sequence[EvalSample], modes: Sequence[str] = ("vanilla",),
            normalizer: str = "whisper_en", max_new_tokens: int = 128, sampling: Sampling | None = None,
            **_) -> TaskResult:
    norm = get_normalizer(normalizer)
    modes = check_modes(modes, speech.lm.num_mctp_modules)
    result = TaskResult("asr", info={"normalizer": normalizer, "samples": len(samples)})
    for mode in modes:
        refs, hyps, done, failed = [], [], [], 0
        for s in progress(samples, f"asr/{mode}"):
            try:
                out = speech.run("asr", s.audio, max_new_tokens=max_new_tokens, sampling=sampling,
                                 **decode_kwargs(mode))
                hyp, error = out.text, None
                done.append(out)
            except AudioError as err:  # counted and scored as all deletions: it stays in the denominator
                hyp, error = "", str(err)
                failed += 1
            refs.append(norm(s.text))
            hyps.append(norm(hyp))
            score = cer if s.language == "zh" else wer
            result.predictions.append({"mode": mode, "id": s.id, "reference": s.text, "prediction": hyp,
                                       "error_rate": score([refs[-1]], [hyps[-1]]) if refs[-1] else None,
                                       "error": error})
        metric = "cer" if samples and all(s.language == "zh" for s in samples) else "wer"
        rate = (cer if metric == "cer" else wer)(refs, hyps, **({} if metric == "cer" else {"normalize": False}))
        result.metrics[mode] = {metric: rate, "failed": failed, **speed_metrics(done)}
    return result
