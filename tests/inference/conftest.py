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


def tiny_lm(num_modules: int = N_MODULES, attn: str = "sdpa", seed: int = 0) -> VitaAudioLM:
    bb = Backbone(CODEBOOK, config=dict(TINY_CONFIG), tokenizer="tiny", attn_implementation=attn, seed=seed)
    torch.manual_seed(seed)
    mctp = MCTPStack.for_backbone(bb, num_modules) if num_modules else None
    return VitaAudioLM(bb, mctp).eval()


@pytest.fixture(scope="package")
def lm() -> VitaAudioLM:
    return tiny_lm()


@pytest.fixture(scope="package")
def prompts() -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 250, (n,), generator=g).tolist() for n in (5, 9, 3)]
