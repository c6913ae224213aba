"""Spoken QA: answer each spoken question; containment accuracy of the text answer (S->T) and of the spoken
answer as an ASR judge hears it (S->S). A sample without audio output is wrong for S->S and stays in the
denominator; a question whose audio cannot be read is wrong for both (counted in `failed`)."""

from __future__ import annotations

from collections.abc import Sequence

from vita_audio.audio.io import AudioError
from vita_audio.eval.adapters.sample import EvalSample
from vita_audio.eval.progress import progress
from vita_audio.eval.metrics import contains_answer
from vita_audio.eval.tasks.common import TaskResult, check_modes, decode_kwargs, save_wav, speed_metrics
from vita_audio.eval.tasks.tts import transcribe
from vita_audio.inference.api import SpeechLM
from vita_audio.inference.sampling import Sampling


def run_sqa(speech: SpeechLM, samples: Sequence[EvalSample], judge, modes: Sequence[str] = ("vanilla",),
            max_new_tokens: int = 512, sampling: Sampling | None = None, save_audio: int = 0,
            audio_dir: str | None = None, **_) -> TaskResult:
    """`save_audio`: the spoken answers to the first so many questions per mode are written under `audio_dir`."""
    modes = check_modes(modes, speech.lm.num_mctp_modules)
    result = TaskResult("sqa", info={"rule": "containment (spec section 7)", "samples": len(samples)})
    for mode in modes:
        st = ss = failed = no_audio = 0
        done = []
        for i, s in enumerate(progress(samples, f"sqa/{mode}")):
            try:
                out = speech.run("s2s", s.audio, max_new_tokens=max_new_tokens, sampling=sampling,
                                 **decode_kwargs(mode))
            except AudioError as err:
                failed += 1
                result.predictions.append({"mode": mode, "id": s.id, "error": str(err), "s2t": False, "s2s": False})
                continue
            done.append(out)
            heard = transcribe(judge, out.wav, out.sample_rate) if out.wav is not None else ""
            no_audio += out.wav is None
            wav_path = save_wav(audio_dir, mode, s.id, out.wav, out.sample_rate) if i < save_audio else None
            ok_t, ok_s = contains_answer(out.text, list(s.answers)), contains_answer(heard, list(s.answers))
            st, ss = st + ok_t, ss + ok_s
            result.predictions.append({"mode": mode, "id": s.id, "answers": list(s.answers), "text": out.text,
                                       "judge_heard": heard, "s2t": ok_t, "s2s": ok_s,
                                       "question": s.extra.get("question"), "question_audio": str(s.audio),
                                       "wav": wav_path})
        n = max(len(samples), 1)
        result.metrics[mode] = {"s2t_accuracy": st / n, "s2s_accuracy": ss / n, "failed": failed,
                                "no_audio": no_audio, **speed_metrics(done)}
    return result
