"""Decoding: schedules (Vanilla / Balance / Boost / Turbo), the cached decoder, sampling, verified mode, speech out.

    from vita_audio.inference import generate, Sampling
    out = generate(lm, [ids], schedule="boost", max_new_tokens=200, sampling=Sampling(seed=0))
"""

from vita_audio.inference.decoder import Decoder, Step
from vita_audio.inference.generate import GenerationOutput, default_schedule, generate
from vita_audio.inference.sampling import Sampling
from vita_audio.inference.schedule import MODES, expand, resolve_schedule

__all__ = ["MODES", "Decoder", "GenerationOutput", "Sampling", "Step", "default_schedule", "expand", "generate",
           "resolve_schedule"]
