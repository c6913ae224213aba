"""One sample through the model, the same way in every generation task (asr, tts, sqa):

    decode_sample(speech, "asr" | "tts" | "s2s", input, Decode, sampling, sample id, max_new_tokens)
        build the prompt (input audio -> codes or frames; text)  -> an input that cannot be prompted (unreadable,
                                                                    silent, too short for one audio code, empty
                                                                    text) is a failed sample: `Decoded.error`
        seed                                                      -> sampling draws from a seed of its own,
                                                                    derived from (run seed, sample id)
        decode (+ output audio synthesis in the same loop)       -> `Finished`, the codec's seconds measured apart

Speed figures of a task (`speed_metrics`), one meaning each, the same in every task:

    lm_tokens_per_s              new tokens / seconds of LM decoding (prefill + steps + text detokenisation);
                                 neither input audio encoding nor output audio synthesis is in it
    e2e_tokens_per_s             new tokens / seconds of the whole request: prompt building (input audio encoding
                                 included) + decoding + output audio synthesis; the judge is not in it
    backbone_forwards_per_token  backbone forwards / new tokens
    first_audio_s                median seconds from the start of decoding to the first audio chunk (tasks with
                                 audio output); prompt building excluded
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace

from vita_audio.eval.codec_clock import CodecClock
from vita_audio.inference.sampling import Sampling
from vita_audio.inference.schedule import Decode
from vita_audio.inference.stream import Finished, collect


@dataclass
class Decoded:
    out: Finished | None  # None: the input could not be turned into a prompt (`error` says why)
    error: str | None = None
    prompt_s: float = 0.0  # building the prompt, input audio encoding included
    codec_s: float = 0.0  # output audio synthesis, inside `out.elapsed`


def sample_seed(seed: int, sample_id: str) -> int:
    """A 63-bit seed of one sample, from the run's seed and the sample's id (never from its position)."""
    digest = hashlib.sha256(f"{seed}\x00{sample_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def sample_sampling(sampling: Sampling | None, sample_id: str) -> Sampling:
    """Greedy (argmax, no penalty) when none is given; a seeded sampling gets the sample's own seed."""
    if sampling is None:
        return Sampling(do_sample=False)
    if not sampling.do_sample or sampling.seed is None:
        return sampling
    return replace(sampling, seed=sample_seed(sampling.seed, sample_id))


class SampleDecoder:
    """Runs samples of one task on `speech` with the codec's time measured apart (`CodecClock`)."""

    def __init__(self, speech, task: str, max_new_tokens: int, sampling: Sampling | None) -> None:
        if task != "tts":
            _ = speech.input_sample_rate  # a model that cannot read input audio at all is a set-up error: raise now
        self.clock = CodecClock()
        self.speech = self.clock.attach(speech)
        self.task, self.max_new_tokens, self.sampling = task, max_new_tokens, sampling

    def __call__(self, inp, decode: Decode, sample_id: str, force_text: bool = False) -> Decoded:
        """`force_text` (tts): the answer's text chunks are the input text, forced (`inference/forcing.py`)."""
        self.clock.reset()
        t0 = time.perf_counter()
        forcing = {"force_text": True} if force_text else {}
        try:  # `SpeechLM.stream` builds the prompt (and encodes the input audio) before it returns
            events = self.speech.stream(self.task, inp, max_new_tokens=self.max_new_tokens,
                                        sampling=sample_sampling(self.sampling, sample_id),
                                        schedule=decode.schedule, verify=decode.verify,
                                        drafting=decode.drafting, **forcing)
        except ValueError as err:  # AudioError, an input too short for one audio code, an empty text
            return Decoded(None, f"{type(err).__name__}: {err}")
        prompt_s = time.perf_counter() - t0
        out = collect(events)
        return Decoded(out, None, prompt_s, self.clock.seconds)


def speed_metrics(decoded: list[Decoded]) -> dict[str, float]:
    """The speed figures (module docstring) over the samples that decoded."""
    ok = [d for d in decoded if d.out is not None]
    tokens = sum(len(d.out.tokens) for d in ok)
    lm_s = sum(d.out.elapsed - d.codec_s for d in ok)
    e2e_s = sum(d.prompt_s + d.out.elapsed for d in ok)
    out = {"lm_tokens_per_s": tokens / lm_s if lm_s > 0 else 0.0,
           "e2e_tokens_per_s": tokens / e2e_s if e2e_s > 0 else 0.0,
           "backbone_forwards_per_token": sum(d.out.backbone_forwards for d in ok) / tokens if tokens else 0.0}
    first = sorted(d.out.first_audio_s for d in ok if d.out.first_audio_s is not None)
    if first:
        out["first_audio_s"] = first[len(first) // 2]  # median
    return out
