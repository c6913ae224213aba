import torch
import pytest

from vita_audio.model.text_tokenizer import build_tiny_tokenizer, load_text_tokenizer
from vita_audio.model.vocab import (
    AUDIO_PLACEHOLDER, BEGIN_OF_AUDIO, END_OF_AUDIO, SPECIAL_TOKEN_LAYOUTS, VITA_AUDIO_SPECIALS, AudioVocab,
    audio_token, audio_vocab_of, extend_tokenizer, special_tokens_of,
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


# Qwen2.5's tokenizer: 151643 byte-level BPE entries, then these 22 added specials (ids 151643..151664).
QWEN2_5_ADDED = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
)
# The reference ids of the 20 specials on Qwen2.5, written out (method spec, section 1: added in this order).
REFERENCE_IDS = {
    "<|begin_of_image|>": 151665, "<|end_of_image|>": 151666, "<|context_of_image|>": 151667,
    "<|begin_of_video|>": 151668, "<|end_of_video|>": 151669, "<|context_of_video|>": 151670,
    "<|begin_of_patch|>": 151671, "<|end_of_patch|>": 151672, "<|context_of_patch|>": 151673,
    "<|begin_of_audio|>": 151674, "<|end_of_audio|>": 151675, "<|begin_of_quad|>": 151676, "<|end_of_quad|>": 151677,
    "<|begin_of_ref|>": 151678, "<|end_of_ref|>": 151679, "<|begin_of_box|>": 151680, "<|end_of_box|>": 151681,
    "<|image|>": 151682, "<|video|>": 151683, "<|audio|>": 151684,
}


def qwen2_5_sized_tokenizer():
    """A tokenizer with Qwen2.5's length (151665) and its added specials at their ids, built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    base = {f"w{i}": i for i in range(151643)}  # stands in for the 151643 BPE entries
    tok = Tokenizer(models.WordLevel(base, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.add_special_tokens({"additional_special_tokens": list(QWEN2_5_ADDED)})
    fast.eos_token, fast.pad_token = "<|im_end|>", "<|endoftext|>"
    assert len(fast) == 151665 and fast.convert_tokens_to_ids(["<|endoftext|>", "<|file_sep|>"]) == [151643, 151664]
    return fast


def test_layouts_hold_the_markers_in_reference_order():
    assert len(VITA_AUDIO_SPECIALS) == 20 and list(VITA_AUDIO_SPECIALS) == list(REFERENCE_IDS)
    assert SPECIAL_TOKEN_LAYOUTS["audio_markers"] == (BEGIN_OF_AUDIO, END_OF_AUDIO, AUDIO_PLACEHOLDER)
    plus = SPECIAL_TOKEN_LAYOUTS["vita_audio_plus"]
    assert plus.index("<|context_of_audio|>") == plus.index(END_OF_AUDIO) + 1 and len(plus) == 21
    with pytest.raises(ValueError, match="unknown special-token layout"):
        special_tokens_of("vita")
    with pytest.raises(ValueError, match="must hold each of"):
        special_tokens_of(["<|x|>", BEGIN_OF_AUDIO])


def test_reference_layout_offsets_on_a_small_tokenizer():
    tok = build_tiny_tokenizer()
    n = len(tok)
    vocab = extend_tokenizer(tok, 16, "vita_audio")
    assert (vocab.begin_of_audio, vocab.end_of_audio, vocab.placeholder) == (n + 9, n + 10, n + 19)
    assert vocab.audio_offset == n + 20 and len(tok) == n + 20 + 16


@pytest.mark.slow
def test_reference_ids_on_a_qwen2_5_sized_vocabulary(tmp_path):
    """Every one of the 20 reference ids, <|audio_0|> = 151685 and the 168072 embedding rows, through the real
    loader of a plain Qwen2.5-layout checkpoint (config.json + safetensors + tokenizer) with the preset's layout."""
    import hydra
    from omegaconf import OmegaConf
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from vita_audio.cli.common import CONFIG_DIR

    qwen_sized_tokenizer = qwen2_5_sized_tokenizer()
    qwen_sized_tokenizer.save_pretrained(tmp_path)
    cfg = Qwen2Config(vocab_size=151665, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)
    Qwen2ForCausalLM(cfg).save_pretrained(tmp_path)
    preset = OmegaConf.load(f"{CONFIG_DIR}/model/backbone/qwen2_5_7b.yaml")
    assert preset.special_tokens == "vita_audio"  # the shipped Qwen2.5 presets use the reference layout
    preset.pretrained, preset.audio_codebook_size, preset.gradient_checkpointing = str(tmp_path), 16384, False
    bb = hydra.utils.instantiate(preset)
    for token, expected in REFERENCE_IDS.items():
        assert bb.tokenizer.convert_tokens_to_ids(token) == expected, token
    assert (bb.audio_vocab.begin_of_audio, bb.audio_vocab.end_of_audio) == (151674, 151675)
    assert bb.audio_vocab.placeholder == 151684 and bb.audio_vocab.audio_offset == 151685
    assert bb.tokenizer.convert_tokens_to_ids("<|audio_0|>") == 151685
    assert bb.tokenizer.convert_tokens_to_ids("<|audio_16383|>") == 168068
    assert len(bb.tokenizer) == 168069 and bb.vocab_size == 168072
    assert bb.tokenizer.convert_tokens_to_ids("<|im_end|>") == 151645  # Qwen's own ids untouched


def test_missing_tokenizer_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_text_tokenizer(str(tmp_path / "nope"))
