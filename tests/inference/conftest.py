"""Tiny random models for the decoding tests (module-scoped: building one takes a fraction of a second)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TINY_CONFIG
from vita_audio.model.backbone import Backbone
from vita_audio.model.lm import VitaAudioLM
from vita_audio.model.mctp import MCTPStack

N_MODULES = 4
CODEBOOK = 32
# LM-head biases of `span_lm` (the tiny model's logits spread about 0.14, so these compete with the text rows)
SPAN_BIAS = dict(begin=0.5, end=0.4, codes=0.3, stop=0.3)


def tiny_lm(num_modules: int = N_MODULES, attn: str = "sdpa", seed: int = 0) -> VitaAudioLM:
    bb = Backbone(CODEBOOK, config=dict(TINY_CONFIG), tokenizer="tiny", attn_implementation=attn, seed=seed)
    torch.manual_seed(seed)
    mctp = MCTPStack.for_backbone(bb, num_modules) if num_modules else None
    return VitaAudioLM(bb, mctp).eval()


def span_lm(attn: str = "sdpa") -> VitaAudioLM:
    """A tiny model whose LM head (shared by the backbone and the MCTP modules) is biased toward
    <|begin_of_audio|>, <|end_of_audio|>, the audio codes and <|im_end|>: on `span_prompts` its answers mix text,
    codes and markers, open and close audio spans at different steps per row, and stop with the default stop id
    at different lengths; inside a span the full head often picks a text token (so the restricted head matters).
    The tests that use it assert these premises."""
    lm = tiny_lm(attn=attn, seed=1)
    bb = lm.backbone
    av = bb.audio_vocab
    bias = torch.zeros(bb.vocab_size)
    bias[av.begin_of_audio], bias[av.end_of_audio] = SPAN_BIAS["begin"], SPAN_BIAS["end"]
    bias[av.audio_offset : av.audio_end] = SPAN_BIAS["codes"]
    bias[bb.tokenizer.convert_tokens_to_ids("<|im_end|>")] = SPAN_BIAS["stop"]
    bb.lm_head.bias = torch.nn.Parameter(bias, requires_grad=False)
    return lm


@pytest.fixture(scope="package")
def lm() -> VitaAudioLM:
    return tiny_lm()


@pytest.fixture(scope="package")
def prompts() -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 250, (n,), generator=g).tolist() for n in (5, 9, 3)]


@pytest.fixture(scope="package")
def spans() -> VitaAudioLM:
    return span_lm()


@pytest.fixture(scope="package")
def span_prompts() -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 250, (n,), generator=g).tolist() for n in (5, 9, 3, 7)]


def spy_mctp(dec) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Record (span state, live rows) of every batched MCTP step of `dec`."""
    calls, mctp = [], dec.heads.mctp

    def spy(h, in_span, active=None):
        calls.append((in_span.clone(), (torch.ones_like(in_span) if active is None else active).clone()))
        return mctp(h, in_span) if active is None else mctp(h, in_span, active)

    dec.heads.mctp = spy
    return calls


def mixed_with_a_stopped_row(calls) -> int:
    """MCTP steps where a row had stopped and the live rows were in different span states (the mixed branch)."""
    return sum(1 for in_span, live in calls if not live.all() and in_span[live].any() and not in_span[live].all())


@torch.inference_mode()
def forced_logits(lm: VitaAudioLM, prompts: list[list[int]], tokens: list[list[int]], schedule):
    """Teacher forcing through the fast decoder: (logits (B, V) of every step, the decoder) when row i emits
    `tokens[i]` (whatever the model would pick), so two decoders can be compared at every step, the cached
    multi-token backbone forwards after each MCTP run included, even where rounding makes their picks differ. The
    reference's drafting ("all"): the schedule's MCTP runs whatever the tokens are."""
    from vita_audio.inference import Decoder

    dec = Decoder(lm, prompts, schedule=schedule, max_new_tokens=len(tokens[0]), stop_ids=[], record_logits=True,
                  drafting="all")
    forced = iter(zip(*tokens))
    dec.sampler.pick = lambda context, logits: torch.tensor(next(forced), device=logits.device)
    for _ in dec.steps():
        pass
    return dec.logits, dec
