"""GPU paths of the decoder (skipped without CUDA): bf16 and flash-attention decoding against the oracle."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from tests.inference.conftest import N_MODULES, tiny_lm
from vita_audio.inference import generate
from vita_audio.inference.oracle import slow_generate

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _on_gpu(attn: str, dtype: torch.dtype):
    return tiny_lm(attn=attn).to("cuda", dtype)


@pytest.mark.parametrize("schedule", ["vanilla", [1, N_MODULES], [1, 2, 3, N_MODULES]], ids=str)
def test_cuda_fp32_sdpa_equals_oracle_and_batch(prompts, schedule):
    lm = _on_gpu("sdpa", torch.float32)
    batch = generate(lm, prompts, schedule=schedule, max_new_tokens=24, stop_ids=[]).rows()
    slow = [slow_generate(lm, p, schedule=schedule, max_new_tokens=24, stop_ids=[])[0] for p in prompts]
    assert batch == slow


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is None, reason="needs the flash_attn package")
def test_flash_attention_decodes_like_sdpa(prompts):
    """bf16: flash-attention and SDPA decoders agree on most tokens (bf16 rounding differs between kernels)."""
    flash, sdpa = _on_gpu("flash_attention_2", torch.bfloat16), _on_gpu("sdpa", torch.bfloat16)
    for p in prompts:
        a = generate(flash, [p], schedule=[1, N_MODULES], max_new_tokens=16, stop_ids=[]).rows()[0]
        b = generate(sdpa, [p], schedule=[1, N_MODULES], max_new_tokens=16, stop_ids=[]).rows()[0]
        assert a[:4] == b[:4]
    # batched (left padding goes to flash-attention's variable-length path) == one row at a time
    rows = generate(flash, prompts, schedule=[1, N_MODULES], max_new_tokens=12, stop_ids=[]).rows()
    alone = [generate(flash, [p], schedule=[1, N_MODULES], max_new_tokens=12, stop_ids=[]).rows()[0] for p in prompts]
    assert [r[:4] for r in rows] == [r[:4] for r in alone]
