"""The engine without HTTP: batched rows equal decoding each prompt alone, cancelling frees the slot, a full
queue raises `Overloaded`, a bad decode option fails only its own job."""

from __future__ import annotations

import queue
import time

import pytest
import torch

from tests.serve.conftest import TINY_CODEC, drain, serve_lm
from vita_audio.audio.builtin import BuiltinDetokenizer
from vita_audio.audio.builtin.model import CodecModel
from vita_audio.inference import AudioChunk, Sampling, TextDelta, resolve_schedule, stream
from vita_audio.serve.engine import Done, Engine, Job, Overloaded

PROMPTS = [[1, 5, 9, 2], [7, 3], [4, 4, 8, 1, 6, 2, 9]]


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    return serve_lm(num_modules=4), BuiltinDetokenizer(CodecModel(TINY_CODEC).eval())


def _job(prompt, events, schedule=(1, 4), n=30, **kw):
    return Job(list(prompt), events.put, list(schedule), sampling=Sampling.greedy(), stop_ids=[], max_new_tokens=n,
               **kw)



@pytest.mark.parametrize("codec_threads", [0, 2])
def test_batched_rows_equal_decoding_alone(parts, codec_threads):
    """Three jobs submitted before the engine starts share one decoder; each row's text, audio and tokens equal
    `stream()` of its prompt alone (greedy), with the audio synthesised in the engine thread or on the pool."""
    lm, detok = parts
    engine = Engine(lm, detok, slots=4, max_batch=4, codec_threads=codec_threads)
    sinks = [queue.Queue() for _ in PROMPTS]
    for p, q in zip(PROMPTS, sinks):
        engine.submit(_job(p, q, n=30 + len(p)))  # different lengths: rows end on their own
    engine.start()
    try:
        for p, q in zip(PROMPTS, sinks):
            events = drain(q)
            done = events[-1]
            assert isinstance(done, Done) and done.batch == len(PROMPTS)
            ref = list(stream(lm, p, detok, schedule=[1, 4], max_new_tokens=30 + len(p),
                              sampling=Sampling.greedy(), stop_ids=[]))
            assert done.tokens == ref[-1].tokens and done.finish_reason == "length"
            assert "".join(e.text for e in events if isinstance(e, TextDelta)) == ref[-1].text == done.text
            got = torch.cat([e.wav for e in events if isinstance(e, AudioChunk)])
            assert torch.allclose(got, ref[-1].wav, atol=1e-5) and torch.equal(got, done.wav)
        assert engine.stats()["active"] == 0 and engine.stats()["completed"] == 3
    finally:
        engine.stop()


def test_text_only_rows_skip_the_codec(parts):
    lm, detok = parts
    engine = Engine(lm, detok).start()
    try:
        q = queue.Queue()
        engine.submit(_job(PROMPTS[0], q, audio_out=False))
        events = drain(q)
        assert not any(isinstance(e, AudioChunk) for e in events) and events[-1].wav is None
    finally:
        engine.stop()


def test_full_queue_raises_and_cancel_frees(parts):
    lm, detok = parts
    engine = Engine(lm, detok, slots=1, max_queue=1)  # not started: nothing is admitted yet
    q = queue.Queue()
    a, b = _job(PROMPTS[0], q), _job(PROMPTS[1], q)
    engine.submit(a)
    engine.submit(b)
    with pytest.raises(Overloaded, match="slots are busy"):
        engine.submit(_job(PROMPTS[2], q))
    engine.cancel(b)  # a queued job leaves the queue at once
    assert engine.stats()["queued"] == 1
    engine.submit(_job(PROMPTS[2], q))


def test_cancel_mid_generation_closes_the_decoder(parts):
    lm, detok = parts
    engine = Engine(lm, detok, slots=1).start()
    try:
        q = queue.Queue()
        job = _job(PROMPTS[0], q, schedule=(1, 0), n=2000)  # far longer than the test waits
        engine.submit(job)
        q.get(timeout=30)  # the first event: the generation runs
        engine.cancel(job)
        deadline = time.monotonic() + 10
        while engine.stats()["active"] and time.monotonic() < deadline:
            time.sleep(0.01)
        st = engine.stats()
        assert st["active"] == 0 and st["cancelled"] == 1 and st["completed"] == 0
        assert not engine._groups  # the decoder (and its caches) is gone
        q2 = queue.Queue()
        engine.submit(_job(PROMPTS[1], q2, n=5))  # the slot serves the next request
        assert isinstance(drain(q2)[-1], Done)
    finally:
        engine.stop()


def test_a_failing_job_does_not_stop_the_engine(parts):
    lm, detok = parts
    engine = Engine(lm, detok).start()
    try:
        q = queue.Queue()
        engine.submit(_job(PROMPTS[0], q, n=5000))  # over the model's 2048 positions: the Decoder refuses
        err = drain(q)[-1]
        assert isinstance(err, ValueError) and "positions" in str(err)
        engine.submit(_job(PROMPTS[0], q, n=5))
        assert isinstance(drain(q)[-1], Done) and engine.stats()["active"] == 0
    finally:
        engine.stop()


def test_a_new_request_is_answered_while_a_long_one_runs(parts):
    """Generations interleave: a job arriving while a long one decodes gets its whole answer meanwhile."""
    lm, detok = parts
    engine = Engine(lm, detok, slots=2).start()
    try:
        long_q, short_q = queue.Queue(), queue.Queue()
        long_job = _job(PROMPTS[0], long_q, schedule=resolve_schedule([1, 4]), n=1500)
        engine.submit(long_job)
        long_q.get(timeout=30)
        engine.submit(_job(PROMPTS[1], short_q, n=40))
        events = drain(short_q)
        assert isinstance(events[-1], Done) and events[-1].first_audio_s is not None
        assert not any(isinstance(e, Done) for e in list(long_q.queue))  # the long one is still going
        engine.cancel(long_job)
    finally:
        engine.stop()


def test_requests_on_their_way_join_the_batch(parts):
    """Two requests announced together: the first waits (at most the batch window) for the second, and both are
    prefilled as one batch of 2."""
    lm, detok = parts
    engine = Engine(lm, detok, slots=4, batch_window=5.0).start()
    try:
        qa, qb = queue.Queue(), queue.Queue()
        engine.expect()
        engine.expect()
        engine.submit(_job(PROMPTS[0], qa, n=6), reserved=True)
        time.sleep(0.05)  # the first is held back: the second is still "encoding its audio"
        assert engine.stats()["active"] == 0
        engine.submit(_job(PROMPTS[1], qb, n=6), reserved=True)
        assert drain(qa)[-1].batch == 2 and drain(qb)[-1].batch == 2
        engine.expect()
        engine.forget()  # a request that failed before submitting releases its place
        assert engine.stats()["queued"] == 0
    finally:
        engine.stop()
