import pytest
import torch

from tests.conftest import TINY_CONFIG
from vita_audio.model.backbone import Backbone
from vita_audio.model.masking import attention_mask_for, packed_causal_mask


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


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_rows_equal_separate_samples(attn):
    tiny_backbone = Backbone(64, config=dict(TINY_CONFIG), tokenizer="tiny", attn_implementation=attn)
    a, b = torch.randint(0, 500, (1, 7)), torch.randint(0, 500, (1, 5))
    row = torch.cat([a, b, torch.zeros(1, 3, dtype=torch.long)], 1)  # 2 samples + 3 padding
    pos = torch.cat([torch.arange(7), torch.arange(5), torch.zeros(3, dtype=torch.long)])[None]
    sid = torch.tensor([[0] * 7 + [1] * 5 + [-1] * 3])
    with torch.no_grad():
        packed = tiny_backbone(row, pos, sid)
        torch.testing.assert_close(packed[:, :7], tiny_backbone(a), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(packed[:, 7:12], tiny_backbone(b), atol=1e-5, rtol=1e-4)


def test_mask_forms():
    sid = torch.tensor([[0, 0, 1]])
    eager = attention_mask_for(sid, "eager", torch.float32)
    assert eager.dtype == torch.float32 and eager[0, 0, 1, 0] == 0 and eager[0, 0, 2, 0] < -1e30
    assert attention_mask_for(sid, "flash_attention_2", torch.bfloat16) is None  # varlen from position_ids
    with pytest.raises(ValueError, match="packed rows need"):
        attention_mask_for(sid, "flex_attention", torch.float32)


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
