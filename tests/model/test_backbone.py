import pytest
import torch
import torch.nn.functional as F

from tests.conftest import TINY_CONFIG
from vita_audio.model.backbone import Backbone
from vita_audio.model.masking import (attention_mask_for, packed_attention_kwargs, packed_causal_mask,
                                      positions_mark_samples)


def test_preset_builds_deterministically():
    a = Backbone(64, config=dict(TINY_CONFIG), tokenizer="tiny", seed=3)
    b = Backbone(64, config=dict(TINY_CONFIG), tokenizer="tiny", seed=3)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n


def test_local_directory_round_trip(tmp_path, tiny_backbone):
    """A real-format HF checkpoint (config.json + safetensors + tokenizer) written here loads offline."""
    tiny_backbone.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "config.json").is_file()
    assert (tmp_path / "ckpt" / "tokenizer.json").is_file()
    loaded = Backbone(64, pretrained=str(tmp_path / "ckpt"))
    assert loaded.audio_vocab == tiny_backbone.audio_vocab
    assert loaded.vocab_size == tiny_backbone.vocab_size
    x = torch.randint(0, loaded.vocab_size, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), tiny_backbone(x))


def test_plain_text_checkpoint_gets_audio_vocabulary(tmp_path):
    """A text-only LLM directory (like Qwen2.5) is extended and resized on load."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from vita_audio.model.text_tokenizer import build_tiny_tokenizer

    cfg = dict(TINY_CONFIG)
    tok = build_tiny_tokenizer()
    hf = AutoModelForCausalLM.from_config(AutoConfig.for_model(cfg.pop("model_type"), vocab_size=len(tok), **cfg))
    hf.save_pretrained(tmp_path / "llm")
    tok.save_pretrained(tmp_path / "llm")
    bb = Backbone(128, pretrained=str(tmp_path / "llm"))
    assert bb.vocab_size % 8 == 0 and bb.vocab_size >= len(tok) + 3 + 128
    # the text rows are the original ones
    torch.testing.assert_close(bb.embed_tokens.weight[: len(tok)], hf.get_input_embeddings().weight)


def test_missing_checkpoint_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is fetched"):
        Backbone(64, pretrained=str(tmp_path / "missing"))


def test_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one"):
        Backbone(64)


def _packed_batch(vocab: int = 500):
    """Two packed rows (B = 2) of different layouts and the samples they hold, with their places."""
    g = torch.Generator().manual_seed(0)
    a, b, c, d = (torch.randint(0, vocab, (1, n), generator=g) for n in (7, 5, 4, 9))
    z = lambda n: torch.zeros(1, n, dtype=torch.long)  # noqa: E731
    rows = torch.cat([torch.cat([a, b, z(3)], 1), torch.cat([c, d, z(2)], 1)])  # (2, 15)
    pos = torch.stack([torch.cat([torch.arange(7), torch.arange(5), torch.zeros(3, dtype=torch.long)]),
                       torch.cat([torch.arange(4), torch.arange(9), torch.zeros(2, dtype=torch.long)])])
    sid = torch.tensor([[0] * 7 + [1] * 5 + [-1] * 3, [0] * 4 + [1] * 9 + [-1] * 2])
    places = [(a, 0, 0, 7), (b, 0, 7, 12), (c, 1, 0, 4), (d, 1, 4, 13)]  # (sample, row, start, end)
    return rows, pos, sid, places


def _assert_packed_equals_alone(bb, packed, places):
    with torch.no_grad():
        for x, r, s, e in places:
            torch.testing.assert_close(packed[r : r + 1, s:e], bb(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_rows_equal_separate_samples(attn):
    bb = Backbone(64, config=dict(TINY_CONFIG), tokenizer="tiny", attn_implementation=attn)
    rows, pos, sid, places = _packed_batch()
    with torch.no_grad():
        packed = bb(rows, pos, sid)
    _assert_packed_equals_alone(bb, packed, places)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_transformers_packed_mask_equals_the_hand_built_one(attn):
    """sdpa / eager get no mask: transformers' packed-sequence mask from the positions gives, on every real token,
    exactly what the hand-built block-diagonal mask gives (B = 2 rows)."""
    bb = Backbone(64, config=dict(TINY_CONFIG), tokenizer="tiny", attn_implementation=attn)
    rows, pos, sid, _ = _packed_batch()
    kwargs = packed_attention_kwargs(sid, pos, attn, torch.float32)
    assert kwargs == {"attention_mask": None}
    with torch.no_grad():
        ours = bb.model.model(input_ids=rows, position_ids=pos, use_cache=False,
                              attention_mask=attention_mask_for(sid, attn, torch.float32)).last_hidden_state
        theirs = bb(rows, pos, sid)
    real = sid >= 0
    torch.testing.assert_close(theirs[real], ours[real], atol=1e-6, rtol=1e-5)
    # positions that do not mark the samples of sample_ids: the hand-built mask, never a leak
    flat = torch.arange(rows.shape[1]).expand_as(rows)
    mask = packed_attention_kwargs(sid, flat, attn, torch.float32)["attention_mask"]
    assert mask is not None and mask.shape == (2, 1, 15, 15)
    assert positions_mark_samples(pos, sid) and not positions_mark_samples(flat, sid)


def reference_flash_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """A pure-torch stand-in for transformers' flash-attention dispatch (CPU): with `cu_seq_lens_q/k` it runs
    causal attention per sequence of the flattened batch (the varlen kernel); without them it infers sequences from
    `position_ids` only for a batch of one row, else it is causal over each whole row, as the real dispatch is."""
    B, Hq, T, D = query.shape
    rep = Hq // key.shape[1]
    q = query.transpose(1, 2).reshape(B * T, Hq, D)  # (B*T, Hq, D)
    k, v = (x.repeat_interleave(rep, dim=1).transpose(1, 2).reshape(B * T, Hq, D) for x in (key, value))
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:
        pos = kwargs["position_ids"]
        if B == 1:
            starts = torch.nonzero(torch.diff(pos[0], prepend=pos[0, :1] - 1) != 1).flatten()
        else:
            starts = torch.arange(0, B * T, T)
        cu = torch.cat([starts, torch.tensor([B * T])])
    else:
        assert kwargs["max_length_q"] == int(torch.diff(cu).max())  # what the real kernel is sized by
    out = torch.empty_like(q)
    for s, e in zip(cu[:-1].tolist(), cu[1:].tolist()):
        out[s:e] = F.scaled_dot_product_attention(
            q[s:e].transpose(0, 1), k[s:e].transpose(0, 1), v[s:e].transpose(0, 1), is_causal=True, scale=scaling
        ).transpose(0, 1)
    return out.reshape(B, T, Hq, D), None


def test_flash_attention_gets_the_sample_boundaries():
    """Flash attention with B > 1 packed rows: the varlen boundaries reach the attention layers, so each packed
    sample equals its own forward (a reference flash dispatch stands in for the CUDA kernel)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    AttentionInterface.register("flash_attention_reference", reference_flash_attention)
    AttentionMaskInterface.register("flash_attention_reference", flash_attention_mask)
    bb = Backbone(64, config=dict(TINY_CONFIG), tokenizer="tiny")
    rows, pos, sid, places = _packed_batch()
    bb.model.config._attn_implementation = "flash_attention_reference"
    try:
        with torch.no_grad():
            packed = bb(rows, pos, sid)
    finally:
        bb.model.config._attn_implementation = "sdpa"
    _assert_packed_equals_alone(bb, packed, places)


def test_mask_forms():
    sid = torch.tensor([[0, 0, 1], [0, -1, -1]])
    pos = torch.tensor([[0, 1, 0], [0, 0, 0]])
    eager = attention_mask_for(sid, "eager", torch.float32)
    assert eager.dtype == torch.float32 and eager[0, 0, 1, 0] == 0 and eager[0, 0, 2, 0] < -1e30
    flash = packed_attention_kwargs(sid, pos, "flash_attention_2", torch.bfloat16)  # the boundaries, no mask
    assert flash["attention_mask"] is None
    assert flash["cu_seq_lens_q"].tolist() == flash["cu_seq_lens_k"].tolist() == [0, 2, 3, 4, 5, 6]
    assert flash["cu_seq_lens_q"].dtype == torch.int32 and flash["max_length_q"] == flash["max_length_k"] == 2
    with pytest.raises(ValueError, match="would cross packed samples"):
        packed_attention_kwargs(sid, pos, "flex_attention", torch.float32)
    with pytest.raises(ValueError, match="packed rows need"):
        attention_mask_for(sid, "flex_attention", torch.float32)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (flash attention)")
def test_flash_attention_2_packed_batch_equals_unpacked_forwards_on_gpu():
    pytest.importorskip("flash_attn", reason="needs the flash-attn package for attn_implementation=flash_attention_2")
    bb = Backbone(64, config=dict(TINY_CONFIG), tokenizer="tiny", attn_implementation="flash_attention_2")
    bb = bb.to("cuda", torch.bfloat16)
    rows, pos, sid, places = _packed_batch()
    with torch.no_grad():
        packed = bb(rows.cuda(), pos.cuda(), sid.cuda()).float()
        for x, r, s, e in places:
            torch.testing.assert_close(packed[r : r + 1, s:e], bb(x.cuda()).float(), atol=2e-2, rtol=2e-2)


def test_mask_blocks():
    m = packed_causal_mask(torch.tensor([[0, 0, 1, 1, -1]]))[0, 0]
    expect = torch.tensor([
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 0, 0, 1],
    ], dtype=torch.bool)
    assert torch.equal(m, expect)
