"""Incremental text (multi-byte characters over several byte-level tokens, linear cost) and the token router."""

from __future__ import annotations

import pytest
from tokenizers.decoders import DecodeStream

from tests.inference.conftest import N_MODULES
from vita_audio.inference import Finished, TextDelta, stream
from vita_audio.inference.routing import REPLACEMENT, TextStream, TokenRouter
from vita_audio.model.text_tokenizer import build_tiny_tokenizer

# Chinese (3 bytes a character), an emoji (4 bytes), accents (2 bytes) and English: the tiny byte-level BPE knows
# only English merges, so every non-ASCII character is split over several tokens
TEXT = "你好, world! 我们今天去公园散步吧。😀 Café au lait, naïve 北京 ok"


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


class CountingTokenizer:
    """Wraps a tokenizer and records the length of every id list it decodes."""

    def __init__(self, tok) -> None:
        self.tok, self.decoded = tok, []
        self.all_special_ids = tok.all_special_ids

    def decode(self, ids, **kwargs):
        self.decoded.append(len(ids))
        return self.tok.decode(ids, **kwargs)


def _push_all(ts: TextStream, ids: list[int]) -> list[str]:
    return [ts.push(i) for i in ids]


def test_multibyte_characters_are_emitted_whole_and_match_the_offline_decode(tok):
    ids = tok.encode(TEXT)
    assert len(ids) > len(TEXT) * 1.3  # the premise: characters split over several tokens
    ts = TextStream(tok)
    deltas = _push_all(ts, ids)
    assert not any(REPLACEMENT in d for d in deltas)  # no half character ever reaches the client
    assert "".join(deltas) == ts.text == tok.decode(ids, skip_special_tokens=True) == TEXT
    assert ts.finish() == ""
    # the same chunks as the tokenizers library's own incremental decoder
    ds = DecodeStream(skip_special_tokens=True)
    chunks = [ds.step(tok.backend_tokenizer, i) or "" for i in ids]
    assert deltas == chunks


def test_decoding_cost_is_linear_in_the_answer_length(tok):
    """Each push decodes a window of a few tokens, never the answer so far (the old rule did: quadratic)."""
    ids = tok.encode(TEXT * 8)  # ~500 tokens
    counting = CountingTokenizer(tok)
    ts = TextStream(counting)
    assert "".join(_push_all(ts, ids)) == TEXT * 8
    assert max(counting.decoded) <= 8  # one character's tokens plus the previous chunk's
    assert sum(counting.decoded) <= 6 * len(ids)


def test_an_unfinished_character_is_flushed_at_the_end(tok):
    ids = tok.encode("ok 你")
    ts = TextStream(tok)
    deltas = _push_all(ts, ids[:-1])  # the last byte of 你 never comes
    assert "".join(deltas) == "ok "
    tail = ts.finish()
    assert "".join(deltas) + tail == tok.decode(ids[:-1], skip_special_tokens=True) and REPLACEMENT in tail
    assert ts.finish() == ""


def test_special_tokens_are_skipped(tok):
    ids = [tok.convert_tokens_to_ids("<|im_start|>"), *tok.encode("hi 好"), tok.convert_tokens_to_ids("<|endoftext|>")]
    ts = TextStream(tok)
    assert "".join(_push_all(ts, ids)) == "hi 好"


def test_token_router_routes_codes_markers_stops_and_text(lm):
    bb = lm.backbone
    av, tok = bb.audio_vocab, bb.tokenizer
    stop = tok.convert_tokens_to_ids("<|im_end|>")
    router = TokenRouter(tok, av, [stop])
    han = tok.encode("好")  # three byte tokens
    seq = [*tok.encode("Hi "), *han[:2], av.begin_of_audio, av.audio_offset + 5, av.audio_offset, av.end_of_audio,
           han[2], stop]
    routed = [router.push(t) for t in seq]
    kinds = [r.kind for r in routed]
    assert kinds == ["text"] * (len(seq) - 6) + ["marker", "code", "code", "marker", "text", "stop"]
    assert [r.code for r in routed if r.kind == "code"] == router.codes == [5, 0]
    assert "".join(r.text for r in routed) == router.text == "Hi 好"  # the character completes across the span
    assert router.tokens == seq and router.stopped
    assert router.finish() == ""


def test_stream_text_deltas_spell_the_answer(spans, span_prompts):
    """The streamed answer on a model that mixes text, spans and a stop: deltas == Finished.text == the offline
    decode of its text tokens."""
    events = list(stream(spans, span_prompts[0], schedule=[1, N_MODULES], max_new_tokens=30))
    done = events[-1]
    assert isinstance(done, Finished)
    av, tok = spans.backbone.audio_vocab, spans.backbone.tokenizer
    text_ids = [t for t in done.tokens if not av.audio_offset <= t < av.audio_end
                and t not in (av.begin_of_audio, av.end_of_audio, tok.convert_tokens_to_ids("<|im_end|>"))]
    assert len(text_ids) > 0 and done.codes.numel() > 0  # the premise: both kinds of output
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == done.text
    assert done.text == tok.decode(text_ids, skip_special_tokens=True)
