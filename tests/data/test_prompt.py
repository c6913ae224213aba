"""ChatML ids and labels (spec section 6): masking, audio ids as ids, TTS text prepend, generation prompt."""

from __future__ import annotations

import torch

from vita_audio.data.interleave import interleave
from vita_audio.data.prompt import PromptBuilder
from vita_audio.model.loss import IGNORE_INDEX


def enc(tok, s):
    return tok(s, add_special_tokens=False)["input_ids"]


def test_text_only_matches_chatml_string(tok_av):
    tok, av = tok_av
    msgs = (("system", "Be brief."), ("user", "What is two plus three?"), ("assistant", "It is five."))
    ids, labels = PromptBuilder(tok, av).build(msgs, [])
    chatml = "".join(f"<|im_start|>{r}\n{c}<|im_end|>\n" for r, c in msgs)
    assert ids == enc(tok, chatml)
    # supervised: exactly the assistant content + <|im_end|> + "\n"
    target = enc(tok, "It is five.") + [tok.convert_tokens_to_ids("<|im_end|>")] + enc(tok, "\n")
    sup = [i for i, l in zip(ids, labels) if l != IGNORE_INDEX]
    assert sup == target and ids[-len(target):] == target
    assert all(l == i for i, l in zip(ids, labels) if l != IGNORE_INDEX)  # unshifted


def test_asr_audio_inserted_as_ids(tok_av):
    tok, av = tok_av
    codes = torch.tensor([5, 0, 1023, 7])
    msgs = (("user", "Convert the speech to text.\n<|audio|>"), ("assistant", "hello"))
    ids, labels = PromptBuilder(tok, av, [1, 10, 4, 10]).build(msgs, [codes])
    audio = [av.begin_of_audio, *(codes + av.audio_offset).tolist(), av.end_of_audio]
    i = ids.index(av.begin_of_audio)
    assert ids[i : i + len(audio)] == audio and all(l == IGNORE_INDEX for l in labels[: i + len(audio)])
    assert av.placeholder not in ids


def test_tts_text_prepended_and_interleaved(tok_av):
    tok, av = tok_av
    codes = torch.arange(30)
    ratio = [1, 10, 4, 10]
    msgs = (("user", "Convert the text to speech.\nset a timer now"), ("assistant", "<|audio|>"))
    ids, labels = PromptBuilder(tok, av, ratio).build(msgs, [codes])
    text = enc(tok, "set a timer now")
    expected = interleave(text, (codes + av.audio_offset).tolist(), ratio, av.begin_of_audio, av.end_of_audio)
    sup = [i for i, l in zip(ids, labels) if l != IGNORE_INDEX]
    assert sup[: len(expected)] == expected and len(sup) == len(expected) + 1 + len(enc(tok, "\n"))
    assert sup[1] == av.begin_of_audio  # one text token, then audio


def test_sqa_answer_interleaved_question_masked(tok_av):
    """Balance [1, 4, 3, 8, 4, 10]: text chunks 1, 3, 4, ..., audio chunks 2, 6, 8, ...; the chunk count is the
    smaller of the two and the last chunk takes the rest (spec section 3), written out by hand."""
    tok, av = tok_av
    q, a = torch.arange(20), torch.arange(100, 140)
    msgs = (("user", "<|audio|>"), ("assistant", "It is five.\n<|audio|>"))
    ids, labels = PromptBuilder(tok, av, [1, 4, 3, 8, 4, 10]).build(msgs, [q, a])
    t = enc(tok, "It is five.\n")
    assert len(t) == 6  # text cuts 1, 3, 2 (3 chunks); audio cuts 2, 6, 8, 8, 8, 8 (6 chunks) -> 3 chunks
    A = (a + av.audio_offset).tolist()
    boa, eoa, im_end = av.begin_of_audio, av.end_of_audio, tok.convert_tokens_to_ids("<|im_end|>")
    expected = [t[0], boa, *A[0:2], eoa,
                *t[1:4], boa, *A[2:8], eoa,
                *t[4:6], boa, *A[8:40], eoa,  # the last chunk: all remaining text and audio
                im_end, *enc(tok, "\n")]
    sup = [i for i, l in zip(ids, labels) if l != IGNORE_INDEX]
    assert sup == expected
    question = [av.begin_of_audio, *(q + av.audio_offset).tolist(), av.end_of_audio]
    assert ids[: len(ids) - len(expected)] == [*PromptBuilder(tok, av).header("user"), *question, im_end,
                                               *enc(tok, "\n"), *PromptBuilder(tok, av).header("assistant")]
    assert all(l == IGNORE_INDEX for l in labels[: len(ids) - len(expected)])


def test_without_a_ratio_the_message_order_is_kept(tok_av):
    """interleave_ratio=None: no interleaving, and text that follows the audio span stays after it."""
    tok, av = tok_av
    codes = torch.tensor([3, 4, 5])
    msgs = (("user", "Say it."), ("assistant", "<|audio|> and that is all."))
    ids, labels = PromptBuilder(tok, av, None).build(msgs, [codes])
    sup = [i for i, l in zip(ids, labels) if l != IGNORE_INDEX]
    audio = [av.begin_of_audio, *(codes + av.audio_offset).tolist(), av.end_of_audio]
    assert sup == [*audio, *enc(tok, " and that is all."), tok.convert_tokens_to_ids("<|im_end|>"), *enc(tok, "\n")]
    ids2, _ = PromptBuilder(tok, av, None).build((("user", "Hi."), ("assistant", "Hello.\n<|audio|>")), [codes])
    text = enc(tok, "Hello.\n")
    assert ids2[-len(audio) - 2 - len(text) :] == [*text, *audio, tok.convert_tokens_to_ids("<|im_end|>"), *enc(tok, "\n")]


def test_generation_prompt(tok_av):
    tok, av = tok_av
    b = PromptBuilder(tok, av)
    ids = b.generation_prompt((("user", "<|audio|>"),), [torch.tensor([1, 2])])
    assert ids[-len(b.header("assistant")):] == b.header("assistant")
    assert ids[:1] == [tok.convert_tokens_to_ids("<|im_start|>")]
