"""Decoding: schedules (Vanilla / Balance / Boost / Turbo), the cached decoder, sampling, verified mode, speech out.

    from vita_audio.inference import generate, Sampling
    out = generate(lm, [ids], schedule="boost", max_new_tokens=200, sampling=Sampling(seed=0))
    out = generate(lm, [ids_a, ids_b], sampling=Sampling(), seeds=[1, 2])   # a seed per row: same as each alone

    from vita_audio.inference import load_model, SpeechLM, stream
    lm = load_model("artifacts/stages/demo/mctp_all/hf")      # or a .ckpt, or a published directory
"""

from vita_audio.checkpoint import load_model  # the one loader, re-exported for `from vita_audio.inference import ...`
from vita_audio.inference.api import SpeechLM
from vita_audio.inference.decoder import Decoder, Step
from vita_audio.inference.generate import GenerationOutput, default_schedule, generate
from vita_audio.inference.routing import Routed, TextStream, TokenRouter
from vita_audio.inference.sampling import Sampling
from vita_audio.inference.schedule import MODES, expand, resolve_schedule
from vita_audio.inference.stream import AudioChunk, Finished, TextDelta, stream

__all__ = ["MODES", "AudioChunk", "Decoder", "Finished", "GenerationOutput", "Routed", "Sampling", "SpeechLM", "Step",
           "TextDelta", "TextStream", "TokenRouter", "default_schedule", "expand", "generate", "load_model",
           "resolve_schedule", "stream"]
