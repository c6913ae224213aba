"""Spoken QA: answer each spoken question; containment accuracy (spec section 7, after the task's normaliser) of
the text answer (S->T) and of the spoken answer as an ASR judge hears it (S->S). A sample without audio output is
wrong for S->S and stays in the denominator (`no_audio`); a question whose audio cannot be prompted (unreadable,
silent, too short for one audio code) is wrong for both and counted in `failed`."""

from __future__ import annotations

from collections.abc import Sequence

from vita_audio.eval.adapters.sample import EvalSample
from vita_audio.eval.metrics import contains_answer
from vita_audio.eval.normalize import get_normalizer
from vita_audio.eval.progress import progress
from vita_audio.eval.tasks.common import TaskResult, describe_modes, resolve_modes, save_wav
from vita_audio.eval.tasks.decode import SampleDecoder, speed_metrics
from vita_audio.eval.tasks.tts import transcribe
from vita_audio.inference.sampling import Sampling


def run_sqa(speech, samples: Sequence[EvalSample], judge, modes: Sequence[str] = ("vanilla",),
            normalizer: str = "whisper_en", max_new_tokens: int = 512, sampling: Sampling | None = None,
            drafting: str | None = None, save_audio: int = 0, audio_dir: str | None = None, **_) -> TaskResult:
    """`save_audio`: the spoken answers to the first so many questions per mode are written under `audio_dir`."""
    get_normalizer(normalizer)  # an unknown name fails before any decoding
    decodes = resolve_modes(modes, speech.lm, drafting)
    decode_sample = SampleDecoder(speech, "s2s", max_new_tokens, sampling)
    result = TaskResult("sqa", info={"rule": "containment (spec section 7)", "normalizer": normalizer,
                                     "samples": len(samples), "decodes": describe_modes(decodes)})
    for mode, decode in decodes.items():
        st = ss = no_audio = 0
        done = []
        for i, s in enumerate(progress(samples, f"sqa/{mode}")):
            d = decode_sample(s.audio, decode, s.id)
            done.append(d)
            if d.out is None:
                result.predictions.append({"mode": mode, "id": s.id, "error": d.error, "s2t": False, "s2s": False})
                continue
            out = d.out
            heard = transcribe(judge, out.wav, out.sample_rate) if out.wav is not None else ""
            no_audio += out.wav is None
            wav_path = save_wav(audio_dir, mode, s.id, out.wav, out.sample_rate) if i < save_audio else None
            ok_t = contains_answer(out.text, s.answers, normalizer)
            ok_s = contains_answer(heard, s.answers, normalizer)
            st, ss = st + ok_t, ss + ok_s
            result.predictions.append({"mode": mode, "id": s.id, "answers": list(s.answers), "text": out.text,
                                       "judge_heard": heard, "s2t": ok_t, "s2s": ok_s,
                                       "question": s.extra.get("question"), "question_audio": str(s.audio),
                                       "wav": wav_path, "error": None})
        n = max(len(samples), 1)
        result.metrics[mode] = {"s2t_accuracy": st / n, "s2s_accuracy": ss / n,
                                "failed": sum(d.out is None for d in done), "no_audio": no_audio,
                                **speed_metrics(done)}
    return result
