import torch
import pytest

from vita_audio.model.text_tokenizer import build_tiny_tokenizer, load_text_tokenizer
from vita_audio.model.vocab import (
    AUDIO_PLACEHOLDER, BEGIN_OF_AUDIO, END_OF_AUDIO, AudioVocab, audio_token, audio_vocab_of, extend_tokenizer,
)

TEXT = "<|im_start|>user\nConvert the speech to text. 12 apples, don't!<|im_end|>\n"


def test_extension_layout_and_ids_by_string():
    tok = build_tiny_tokenizer()
    n_text = len(tok)
    vocab = extend_tokenizer(tok, codebook_size=100)
    # markers first, then the audio tokens, contiguous
    assert (vocab.begin_of_audio, vocab.end_of_audio, vocab.placeholder) == (n_text, n_text + 1, n_text + 2)
    assert vocab.audio_offset == n_text + 3
    assert len(tok) == n_text + 3 + 100
    for code in (0, 1, 57, 99):
        assert tok.convert_tokens_to_ids(audio_token(code)) == vocab.audio_offset + code
    assert tok.convert_tokens_to_ids(BEGIN_OF_AUDIO) == vocab.begin_of_audio


def test_text_tokenisation_unchanged_and_markers_atomic():
    before = build_tiny_tokenizer()(TEXT)["input_ids"]
    tok = build_tiny_tokenizer()
    vocab = extend_tokenizer(tok, 64)
    assert tok(TEXT)["input_ids"] == before
    ids = tok(f"a{BEGIN_OF_AUDIO}<|audio_3|><|audio_63|>{END_OF_AUDIO}{AUDIO_PLACEHOLDER}")["input_ids"]
    assert ids[1:] == [vocab.begin_of_audio, vocab.audio_offset + 3, vocab.audio_offset + 63,
                       vocab.end_of_audio, vocab.placeholder]
    assert tok.decode(tok(TEXT)["input_ids"]) == TEXT


def test_extension_is_idempotent_and_keeps_existing_ids():
    tok = build_tiny_tokenizer()
    first = extend_tokenizer(tok, 32)
    n = len(tok)
    second = extend_tokenizer(tok, 32)
    assert first == second and len(tok) == n
    assert audio_vocab_of(tok, 32) == first


def test_missing_audio_vocabulary_is_a_clear_error():
    with pytest.raises(KeyError, match="extend_tokenizer"):
        audio_vocab_of(build_tiny_tokenizer(), 16)


def test_codes_round_trip_and_range_check():
    v = AudioVocab(begin_of_audio=10, end_of_audio=11, placeholder=12, audio_offset=13, codebook_size=8)
    codes = torch.tensor([0, 7, 3])
    ids = v.codes_to_ids(codes)
    assert ids.tolist() == [13, 20, 16]
    assert v.ids_to_codes(torch.tensor([5, 13, 20, 21])).tolist() == [0, 7]
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        v.codes_to_ids(torch.tensor([8]))


def test_resize_pads_to_multiple_of_8(tiny_backbone):
    n = len(tiny_backbone.tokenizer)
    assert tiny_backbone.vocab_size == -(-n // 8) * 8
    assert tiny_backbone.lm_head.weight.shape[0] == tiny_backbone.vocab_size


@pytest.mark.slow
def test_reference_layout_on_a_qwen_sized_vocabulary(tmp_path):
    """Qwen2.5's tokenizer has 151665 entries; the reference adds 20 specials (17 + the 3 audio markers), so
    <|audio_0|> is 151685 and the embedding 168069 -> 168072 rows. A tokenizer of that length (filler tokens)
    and a Qwen2 checkpoint with that vocabulary, extended through the real loader, land on the same numbers."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from vita_audio.model.backbone import Backbone

    tok = build_tiny_tokenizer()
    tok.add_tokens([f"<|filler_{i}|>" for i in range(151665 - len(tok))])
    tok.save_pretrained(tmp_path)
    cfg = Qwen2Config(vocab_size=151665, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)
    Qwen2ForCausalLM(cfg).save_pretrained(tmp_path)
    extra = [f"<|reference_special_{i}|>" for i in range(17)]
    bb = Backbone(16384, pretrained=str(tmp_path), extra_special_tokens=extra)
    assert bb.audio_vocab.audio_offset == 151685
    assert len(bb.tokenizer) == 168069 and bb.vocab_size == 168072
    assert bb.tokenizer.convert_tokens_to_ids("<|audio_16383|>") == 168068


def test_missing_tokenizer_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_text_tokenizer(str(tmp_path / "nope"))
