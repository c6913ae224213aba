"""GPU paths of the decoder (skipped without CUDA): fp32 decoding against the oracle, bf16 flash-attention decoding
against SDPA at every step."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from tests.inference.conftest import N_MODULES, forced_logits, span_lm, tiny_lm
from vita_audio.inference import generate
from vita_audio.inference.oracle import slow_generate

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _on_gpu(attn: str, dtype: torch.dtype, spans: bool = False):
    return (span_lm(attn=attn) if spans else tiny_lm(attn=attn)).to("cuda", dtype)


@pytest.mark.parametrize("schedule", ["vanilla", [1, N_MODULES], [1, 2, 3, N_MODULES]], ids=str)
def test_cuda_fp32_sdpa_equals_oracle_and_batch(prompts, schedule):
    lm = _on_gpu("sdpa", torch.float32)
    batch = generate(lm, prompts, schedule=schedule, max_new_tokens=24, stop_ids=[], drafting="all").rows()
    slow = [slow_generate(lm, p, schedule=schedule, max_new_tokens=24, stop_ids=[], drafting="all")[0]
            for p in prompts]
    assert batch == slow


def max_error(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    """Largest |difference| of two runs' logits over every step (the -inf entries of restricted steps must agree)."""
    assert len(got) == len(want)
    err = 0.0
    for a, b in zip(got, want):
        a, b = a.float().cpu(), b.float().cpu()
        assert torch.equal(a.isfinite(), b.isfinite())
        err = max(err, float((a[a.isfinite()] - b[b.isfinite()]).abs().max()))
    return err


def compare_at_every_step(attn: str, reference_attn: str, prompts: list[list[int]], device: str = "cuda") -> None:
    """Teacher-forced logits of `attn` in bf16 against an fp32 reference at every step of a Boost-like schedule
    (each cycle's cached multi-token backbone forward included), within the bf16 error that `reference_attn` in
    bf16 itself shows; then the batched (left-padded) decoder against each row alone, within the same bound."""
    schedule, n = [1, N_MODULES], 24
    ref = span_lm(attn=reference_attn).to(device, torch.float32)
    same = span_lm(attn=reference_attn).to(device, torch.bfloat16)
    other = span_lm(attn=attn).to(device, torch.bfloat16)
    tokens = generate(ref, prompts, schedule=schedule, max_new_tokens=n, stop_ids=[]).rows()
    bound = 0.0
    for p, t in zip(prompts, tokens):
        want, dec = forced_logits(ref, [p], [t], schedule)
        assert dec.backbone_forwards >= 4 and dec.mctp_steps >= 3 * N_MODULES  # cycles of cached forwards
        bf16 = max_error(forced_logits(same, [p], [t], schedule)[0], want)
        bound = max(bound, 3 * bf16 + 4e-3)
        err = max_error(forced_logits(other, [p], [t], schedule)[0], want)
        assert err <= bound, f"{attn} bf16 logits off by {err:.4f} (bf16 {reference_attn}: {bf16:.4f})"
    batch, _ = forced_logits(other, prompts, tokens, schedule)
    for i, (p, t) in enumerate(zip(prompts, tokens)):
        alone, _ = forced_logits(other, [p], [t], schedule)
        err = max_error([step[i : i + 1] for step in batch], alone)
        assert err <= bound, f"row {i} of the batch off by {err:.4f} from the row alone"


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is None, reason="needs the flash_attn package")
def test_flash_attention_logits_match_sdpa_at_every_step(span_prompts):
    """bf16 flash-attention (left-padded batches go to its variable-length path) against SDPA: the same logits,
    within bf16 rounding, at every step of every cycle."""
    compare_at_every_step("flash_attention_2", "sdpa", span_prompts)
