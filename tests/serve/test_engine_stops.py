"""The engine as a busy server runs it: the default stop ids, rows that stop at different steps, rows in different
audio-span states inside one batch, and sampling (seeded). Every row must equal `stream()` of its prompt alone.

The model is `biased_lm` (its head favours the markers, the stop and a few codes / text tokens), so the premises
are deterministic; each test asserts them, so a model that stops producing them fails loudly instead of passing
over the case."""

from __future__ import annotations

import queue

import pytest
import torch

from tests.serve.conftest import TINY_CODEC, biased_lm, drain
from vita_audio.audio.builtin import BuiltinDetokenizer
from vita_audio.audio.builtin.model import CodecModel
from vita_audio.inference import AudioChunk, Sampling, TextDelta, stream
from vita_audio.serve.engine import Done, Engine, Job

PROMPTS = [[1, 5, 9, 2], [7, 3], [4, 4, 8, 1, 6, 2, 9], [11, 12, 13], [20, 30, 40, 50, 60]]
SCHEDULE = [1, 4]
N = 40


@pytest.fixture(scope="module")
def parts():
    lm = biased_lm(num_modules=4)
    torch.manual_seed(0)
    return lm, BuiltinDetokenizer(CodecModel(TINY_CODEC).eval())



def _run_batch(lm, detok, samplings: list[Sampling], codec_threads: int) -> list[list]:
    """Every prompt as one job with the default stop ids, submitted before the engine starts: one batch."""
    engine = Engine(lm, detok, slots=len(PROMPTS), max_batch=len(PROMPTS), codec_threads=codec_threads)
    sinks = [queue.Queue() for _ in PROMPTS]
    for p, q, sampling in zip(PROMPTS, sinks, samplings):
        engine.submit(Job(list(p), q.put, SCHEDULE, sampling=sampling, stop_ids=None, max_new_tokens=N))
    engine.start()
    try:
        return [drain(q) for q in sinks]
    finally:
        engine.stop()


def _span_states(lm, tokens: list[int]) -> list[bool]:
    """Inside an audio span after each token."""
    av, state, out = lm.backbone.audio_vocab, False, []
    for t in tokens:
        state = (state or t == av.begin_of_audio) and t != av.end_of_audio
        out.append(state)
    return out


def _assert_premises(lm, dones: list[Done]) -> None:
    """Rows stop at different steps, and at some step a row has stopped while the live rows are in different
    span states (the mixed branch of the restricted MCTP head, with a stopped row in the batch)."""
    stopped = sorted(len(d.tokens) for d in dones if d.finish_reason == "stop")
    assert len(set(stopped)) >= 2 and any(d.finish_reason == "length" for d in dones), [
        (d.finish_reason, len(d.tokens)) for d in dones]
    spans = [_span_states(lm, d.tokens) for d in dones]
    mixed = [t for t in range(N) if any(len(d.tokens) <= t for d in dones)
             and len({s[t] for d, s in zip(dones, spans) if len(d.tokens) > t + 1}) == 2]
    assert mixed, "no step with a stopped row and live rows in different span states"


def _assert_equal_alone(lm, detok, events: list, prompt: list[int], sampling: Sampling) -> None:
    done = events[-1]
    assert isinstance(done, Done), done
    ref = list(stream(lm, prompt, detok, schedule=SCHEDULE, max_new_tokens=N, sampling=sampling, stop_ids=None))[-1]
    assert done.tokens == ref.tokens
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == ref.text == done.text
    chunks = [e.wav for e in events if isinstance(e, AudioChunk)]
    if ref.wav is None:
        assert not chunks
    else:
        assert torch.allclose(torch.cat(chunks), ref.wav, atol=1e-5)


@pytest.mark.parametrize("codec_threads", [0, 2])
def test_rows_stopping_in_mixed_span_states_equal_decoding_alone(parts, codec_threads):
    lm, detok = parts
    results = _run_batch(lm, detok, [Sampling.greedy()] * len(PROMPTS), codec_threads)
    dones = [r[-1] for r in results]
    assert all(isinstance(d, Done) for d in dones), dones  # no row of the batch failed
    assert all(d.batch == len(PROMPTS) for d in dones)
    _assert_premises(lm, dones)
    for events, p in zip(results, PROMPTS):
        _assert_equal_alone(lm, detok, events, p, Sampling.greedy())


def test_seeded_sampled_rows_equal_decoding_alone(parts):
    """Sampling on (the reference's defaults), seeds equal for some requests and different for others (as clients
    that pin a seed send them): the requests share one batch, and each row draws what the same request draws
    alone."""
    lm, detok = parts
    samplings = [Sampling(seed=s) for s in (3, 3, 4, 4, 5)]
    results = _run_batch(lm, detok, samplings, codec_threads=2)
    dones = [r[-1] for r in results]
    assert all(isinstance(d, Done) for d in dones), dones
    assert all(d.batch == len(PROMPTS) for d in dones)
    assert len({tuple(d.tokens) for d in dones}) == len(PROMPTS)
    assert any(d.finish_reason == "stop" for d in dones) and any(d.finish_reason == "length" for d in dones)
    for events, p, sampling in zip(results, PROMPTS, samplings):
        _assert_equal_alone(lm, detok, events, p, sampling)
