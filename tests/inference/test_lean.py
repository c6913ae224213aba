"""The decoder's lean model calls (`inference/lean.py`) give exactly what transformers' forward gives."""

from __future__ import annotations

import types

import pytest
import torch
from transformers import DynamicCache
from transformers.masking_utils import create_causal_mask

from tests.inference.conftest import forced_logits, tiny_lm
from vita_audio.inference import Decoder
from vita_audio.inference.lean import causal_mask, lean_supported


@pytest.mark.parametrize("cached,q,padded", [(0, 5, False), (5, 1, False), (5, 3, False), (5, 3, True),
                                             (0, 5, True)])
def test_mask_equals_transformers(lm, cached, q, padded):
    bb = lm.backbone
    cache = DynamicCache()
    B = 2
    mask2d = torch.ones(B, cached + q, dtype=torch.long)
    if padded:
        mask2d[1, :2] = 0
    if cached:
        pos = torch.arange(cached)[None].expand(B, cached)
        bb.step(torch.randint(0, 200, (B, cached)), mask2d[:, :cached], pos, cache)
    embeds = bb.embed_tokens(torch.randint(0, 200, (B, q)))
    positions = torch.arange(cached, cached + q)[None].expand(B, q)
    want = create_causal_mask(config=bb.config, inputs_embeds=embeds, attention_mask=mask2d, cache=cache,
                              position_ids=positions)
    got = causal_mask(bb.config, embeds, mask2d, cache, positions, cached, unpadded=not padded)
    if want is None:
        assert got is None
    else:
        assert got.dtype == want.dtype and got.shape == want.shape and torch.equal(got, want)


@pytest.mark.parametrize("schedule", ["vanilla", [1, 4, 4, 4], [1, 4], [2, 3, 1, 4]])  # 4 modules
def test_lean_steps_equal_transformers_bit_for_bit(lm, prompts, schedule):
    """Every step's logits, padded batch rows and the multi-token forwards after MCTP runs included."""
    g = torch.Generator().manual_seed(3)
    tokens = [torch.randint(0, 300, (14,), generator=g).tolist() for _ in prompts]
    lean, dec = forced_logits(lm, prompts, tokens, schedule)
    assert dec._lean and not dec._unpadded  # the premise: the lean path ran, on padded rows
    orig = Decoder.__init__

    def through_transformers(self, *a, **k):
        orig(self, *a, **k)
        self._lean = False

    Decoder.__init__ = through_transformers
    try:
        ref, _ = forced_logits(lm, prompts, tokens, schedule)
    finally:
        Decoder.__init__ = orig
    assert len(lean) == len(ref) == 14
    for a, b in zip(lean, ref):
        assert torch.equal(a, b)


def test_lean_greedy_tokens_unpadded_batch_of_one(lm, prompts):
    out = {}
    for lean in (True, False):
        dec = Decoder(lm, [prompts[0]], schedule=[1, 4], max_new_tokens=24, stop_ids=[], drafting="all",
                      restrict_mctp="always")
        assert dec._unpadded
        dec._lean = lean
        out[lean] = torch.stack([s.tokens for s in dec.steps()])
    assert torch.equal(out[True], out[False])


def test_lean_only_for_the_forwards_it_mirrors(lm):
    assert lean_supported(lm)
    eager = tiny_lm(attn="eager")
    assert lean_supported(eager)  # eager attention: transformers' own mask builder, same layers
    other = types.SimpleNamespace(backbone=types.SimpleNamespace(model=types.SimpleNamespace(
        model=types.SimpleNamespace(config=types.SimpleNamespace(model_type="gemma", _attn_implementation="sdpa")))))
    assert not lean_supported(other)
    sliding = types.SimpleNamespace(backbone=types.SimpleNamespace(model=types.SimpleNamespace(
        model=types.SimpleNamespace(config=types.SimpleNamespace(
            model_type="qwen2", _attn_implementation="sdpa", layer_types=["full_attention", "sliding_attention"])))))
    assert not lean_supported(sliding)
