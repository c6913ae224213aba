"""Text forcing (`force_text`): the decoder writes the given text into the answer's text chunks, the model writes only
the audio; rows without forcing decode as before; what cannot be honoured is refused by name."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.inference.conftest import N_MODULES, tiny_lm
from vita_audio.inference import Decoder, generate
from vita_audio.inference.forcing import FORCED

RATIO = [1, 10, 4, 10]  # Boost: text 1, 4, 4, ...; audio 8 per chunk


def _text_ids(lm, text="the quick brown fox jumps"):
    return lm.backbone.tokenizer(text, add_special_tokens=False)["input_ids"]


def _layout(lm, row: list[int]) -> list[list[int]]:
    """The text chunks of an answer: the runs of tokens outside audio spans (markers and codes dropped)."""
    av = lm.backbone.audio_vocab
    chunks, cur, inside = [], [], False
    for t in row:
        if t == av.begin_of_audio:
            inside = True
            chunks.append(cur)
            cur = []
        elif t == av.end_of_audio:
            inside = False
        elif not inside and not av.is_audio(torch.tensor(t)):
            cur.append(t)
    return chunks + ([cur] if cur else [])


def _spans(lm, row: list[int]) -> list[list[int]]:
    """The tokens inside each closed audio span of an answer."""
    av = lm.backbone.audio_vocab
    out, cur = [], None
    for t in row:
        if t == av.begin_of_audio:
            cur = []
        elif t == av.end_of_audio and cur is not None:
            out.append(cur)
            cur = None
        elif cur is not None:
            cur.append(t)
    return out


@pytest.mark.parametrize("schedule", ["vanilla", [1, N_MODULES], [1, 2, 2, 4]])
@pytest.mark.parametrize("drafting", ["audio", "all"])
def test_forced_text_is_exactly_the_given_text_in_chunks(spans, span_prompts, schedule, drafting):
    text = _text_ids(spans)
    out = generate(spans, span_prompts[:2], schedule=schedule, max_new_tokens=80, stop_ids=[], drafting=drafting,
                   force_text=[text, text], interleave_ratio=RATIO)
    for row in out.rows():
        chunks = [c for c in _layout(spans, row) if c]
        assert [t for c in chunks for t in c] == text  # the text channel is the given text, nothing else
        assert [len(c) for c in chunks] == [1, 4, 4, 4] and len(text) == 13  # Boost's text chunks
        av = spans.backbone.audio_vocab
        assert row[1] == av.begin_of_audio  # the first chunk: one token, then <boa>
        for span in _spans(spans, row)[:3]:  # the spans before the last text chunk: at most 8 tokens each
            assert 1 <= len(span) <= 8 and all(av.is_audio(torch.tensor(span)).tolist())


def test_forced_tokens_cost_no_model_call_and_mctp_restarts_after_them(spans, span_prompts):
    text = _text_ids(spans)
    av = spans.backbone.audio_vocab
    dec = Decoder(spans, [span_prompts[0]], schedule=[1, N_MODULES], max_new_tokens=80, stop_ids=[],
                  force_text=[text], interleave_ratio=RATIO)
    steps = list(dec.steps())
    modules = [int(s.modules[0]) for s in steps]
    forced = [int(s.tokens[0]) for s in steps if int(s.modules[0]) == FORCED]
    assert [t for t in forced if t not in (av.begin_of_audio, av.end_of_audio)] == text
    assert forced.count(av.begin_of_audio) == 4  # chunks of 1, 4, 4, 4 text tokens
    assert {s.kind for s in steps if int(s.modules[0]) == FORCED} == {"F"}
    assert dec.backbone_forwards + dec.mctp_steps == len(steps) - len(forced)  # forced tokens cost nothing
    for prev, cur in zip(modules, modules[1:]):
        if prev == FORCED and cur != FORCED:
            assert cur == -1  # the model's first step after forced tokens is the backbone's (it consumes them)
        if cur > 0:
            assert prev == cur - 1  # MCTP runs count from module 0
    assert any(m >= 0 for m in modules)  # the spans' audio still comes from MCTP steps


def test_free_rows_decode_as_without_forcing(spans, span_prompts):
    """A row without forcing in a batch with a forced row: its tokens are those of the row alone, unforced."""
    text = _text_ids(spans)
    for schedule in ("vanilla", [1, N_MODULES]):
        mixed = generate(spans, span_prompts[:2], schedule=schedule, max_new_tokens=40,
                         force_text=[text, None], interleave_ratio=RATIO)
        alone = generate(spans, [span_prompts[1]], schedule=schedule, max_new_tokens=40)
        assert mixed.rows()[1] == alone.rows()[0]
        assert mixed.rows()[0] != alone.rows()[0]


def test_stop_ids_still_end_a_forced_row(spans, span_prompts):
    """With stops, a forced row ends when the model stops (only inside or after its spans); its text is a prefix."""
    text = _text_ids(spans)
    out = generate(spans, span_prompts, schedule=[1, N_MODULES], max_new_tokens=120,
                   force_text=[text] * len(span_prompts), interleave_ratio=RATIO)
    im_end = spans.backbone.tokenizer.convert_tokens_to_ids("<|im_end|>")
    for row in out.rows():
        got = [t for c in _layout(spans, row) for t in c if t != im_end]
        assert got == text[: len(got)]


def test_forcing_refuses_what_it_cannot_honour(spans, span_prompts):
    text = _text_ids(spans)
    kw = dict(schedule="vanilla", max_new_tokens=4, force_text=[text])
    with pytest.raises(ValueError, match="force_text cannot be combined with verified"):
        generate(spans, [span_prompts[0]], verify=True, **{**kw, "schedule": None}, interleave_ratio=RATIO)
    with pytest.raises(ValueError, match="stores none .mtp_inference_mode.; give interleave_ratio"):
        generate(spans, [span_prompts[0]], **kw)
    with pytest.raises(ValueError, match="1 force_text rows for 2 prompt rows"):
        generate(spans, span_prompts[:2], interleave_ratio=RATIO, **kw)
    av = spans.backbone.audio_vocab
    with pytest.raises(ValueError, match="force_text row 0: expected a non-empty list of text token ids"):
        generate(spans, [span_prompts[0]], schedule="vanilla", max_new_tokens=4, force_text=[[av.audio_offset]],
                 interleave_ratio=RATIO)
    with pytest.raises(ValueError, match="an interleave ratio is a list"):
        generate(spans, [span_prompts[0]], interleave_ratio=[1, 10, 4], **kw)
    lm = tiny_lm(seed=2)
    lm.backbone.audio_vocab = dataclasses.replace(lm.backbone.audio_vocab, begin_of_audio=lm.backbone.vocab_size + 3)
    with pytest.raises(ValueError, match="force_text needs a model whose tokenizer has <\\|begin_of_audio\\|>"):
        generate(lm, [[1, 2, 3]], interleave_ratio=RATIO, restrict_mctp=False, **kw)


def test_chunks_default_to_the_checkpoint_ratio(spans, span_prompts):
    text = _text_ids(spans)
    spans.generation_config = types_gen([1, 6, 2, 6])  # text 1, 2, 2, ...; audio 4 per chunk
    try:
        out = generate(spans, [span_prompts[0]], schedule="vanilla", max_new_tokens=60, stop_ids=[],
                       force_text=[text])
    finally:
        del spans.generation_config
    chunks = [c for c in _layout(spans, out.rows()[0]) if c]
    assert [len(c) for c in chunks[:3]] == [1, 2, 2]


def types_gen(ratio):
    from transformers import GenerationConfig

    gen = GenerationConfig()
    gen.mtp_inference_mode = list(ratio)
    return gen
