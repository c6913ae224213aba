"""Scheduling faults of the engine, each with the case that used to go wrong: budgets that fit alone but not as one
batch, an answer that never speaks keeping first priority, a row's end decided outside the lock, finished rows
decoding without holding a slot, requests past their deadline, a dead engine thread, text stop sequences."""

from __future__ import annotations

import queue
import threading
import time

import pytest
import torch

from tests.serve.conftest import TINY_CODEC, drain, serve_lm, with_head_bias
from vita_audio.audio.builtin import BuiltinDetokenizer
from vita_audio.audio.builtin.model import CodecModel
from vita_audio.inference import Sampling, TextDelta
from vita_audio.serve.engine import Done, Engine, Job


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    return serve_lm(num_modules=4), BuiltinDetokenizer(CodecModel(TINY_CODEC).eval())


@pytest.fixture(scope="module")
def mute_lm():
    """A model whose every answer is one text token over and over: it never opens an audio span."""
    return with_head_bias(serve_lm(num_modules=4), {300: 100.0})


def _job(prompt, sink, n, schedule=(1, 4), **kw):
    return Job(list(prompt), sink, list(schedule), sampling=Sampling.greedy(), stop_ids=[], max_new_tokens=n, **kw)



def test_requests_that_fit_alone_never_fail_together(parts):
    """2000 prompt tokens + 8 and 2 prompt tokens + 60 each fit the model's 2048 positions; one decoder over both
    (padded to 2000, 60 new tokens for every row) would not: they are decoded in two groups."""
    lm, detok = parts
    engine = Engine(lm, detok, slots=2, max_batch=2)
    qa, qb = queue.Queue(), queue.Queue()
    engine.submit(_job([5] * 2000, qa.put, 8))
    engine.submit(_job([7, 3], qb.put, 60))
    engine.start()
    try:
        a, b = drain(qa)[-1], drain(qb)[-1]
        assert isinstance(a, Done) and isinstance(b, Done), (a, b)
        assert (len(a.tokens), len(b.tokens), a.batch, b.batch) == (8, 60, 1, 1)
    finally:
        engine.stop()


def test_an_answer_that_never_speaks_does_not_starve_a_newer_one(mute_lm, parts):
    """A (audio asked for, never any audio) runs first; B arrives later. A loses its first priority after a bounded
    number of tokens, so B is answered while A still runs."""
    engine = Engine(mute_lm, parts[1], slots=2, max_batch=1).start()  # audio asked for: each row has a codec lane
    try:
        qa, qb = queue.Queue(), queue.Queue()
        a = _job([1, 2, 3], qa.put, 2000, schedule=(1, 0))
        engine.submit(a)
        assert isinstance(qa.get(timeout=30), TextDelta)  # A runs (text only: its first output never comes)
        engine.submit(_job([4, 5], qb.put, 4, schedule=(1, 0)))
        assert isinstance(drain(qb)[-1], Done)
        assert not any(isinstance(e, Done) for e in list(qa.queue)), "B waited for the whole of A"
        engine.cancel(a)
    finally:
        engine.stop()


def test_a_row_is_ended_once_under_the_lock(parts):
    """A codec failure (codec thread) and a cancel (engine thread) on the same row: every change of the row's
    end flags happens under the engine's lock, and the row is counted once."""
    lm, _ = parts
    engine = Engine(lm, None, slots=1)
    job = _job([1, 2], lambda ev: None, 5)
    engine.submit(job)
    engine._open(engine._take_admissions()[0])
    g = engine._groups[0]
    row = g.rows[0]
    unlocked: list[str] = []

    def checked_setattr(self, name, value):
        if name in ("done", "ended") and not engine._cv._is_owned():
            unlocked.append(name)
        object.__setattr__(self, name, value)

    row.__class__ = type("CheckedRow", (type(row),), {"__setattr__": checked_setattr})
    job.cancelled = True
    t = threading.Thread(target=engine._ended, args=(g, row, RuntimeError("codec failed")))
    t.start()
    engine._reap()
    t.join()
    st = engine.stats()
    assert not unlocked, f"row flags {unlocked} changed outside the lock"
    assert st["errors"] + st["cancelled"] == 1 and st["active"] == 0, st


def test_finished_rows_hold_their_slot_until_their_group_ends(parts):
    """A (3 tokens) and B (40) share a decoder that computes A's row until B ends: C, queued behind them, is
    admitted only then, not when A finishes (which would decode 3 rows on 2 slots)."""
    lm, _ = parts
    engine = Engine(lm, None, slots=2, max_batch=2, max_queue=2)
    log: list[tuple[str, object]] = []
    sinks = {name: (lambda ev, name=name: log.append((name, ev))) for name in "ABC"}
    engine.submit(_job([1, 2], sinks["A"], 3))
    engine.submit(_job([3, 4], sinks["B"], 40))
    engine.submit(_job([5, 6], sinks["C"], 3))
    engine.start()
    try:
        deadline = time.monotonic() + 60
        while sum(isinstance(e, Done) for _, e in log) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        done = [name for name, e in log if isinstance(e, Done)]
        assert done == ["A", "B", "C"], done
        c = next(e for name, e in log if name == "C" and isinstance(e, Done))
        assert c.batch == 1 and engine.stats()["slots_used"] == 0
    finally:
        engine.stop()


def test_jobs_past_their_deadline_fail_and_free_their_slot(parts):
    lm, detok = parts
    engine = Engine(lm, detok, slots=1).start()
    try:
        q = queue.Queue()
        engine.submit(_job([1, 2, 3], q.put, 2000, schedule=(1, 0), deadline=time.perf_counter() + 0.3))
        err = drain(q)[-1]
        assert type(err).__name__ == "DeadlineExceeded" and "request_timeout_s" in str(err)
        q2 = queue.Queue()
        engine.submit(_job([1, 2], q2.put, 3, deadline=time.perf_counter() - 1))  # expired while queued
        assert type(drain(q2)[-1]).__name__ == "DeadlineExceeded"
        assert engine.stats()["active"] == 0 and engine.stats()["slots_used"] == 0
        q3 = queue.Queue()
        engine.submit(_job([1, 2], q3.put, 3))
        assert isinstance(drain(q3)[-1], Done)
    finally:
        engine.stop()


def test_a_dead_engine_thread_is_reported_and_fails_its_requests(parts, monkeypatch):
    lm, detok = parts
    engine = Engine(lm, detok, slots=1)

    def broken(_tick):
        raise RuntimeError("scheduler bug")

    monkeypatch.setattr(engine, "_pick", broken)
    q = queue.Queue()
    engine.submit(_job([1, 2], q.put, 3))
    engine.start()
    try:
        err = drain(q)[-1]
        assert type(err).__name__ == "EngineDown"
        deadline = time.monotonic() + 10
        while engine.alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not engine.alive()
        with pytest.raises(Exception, match="engine has stopped"):
            engine.expect()
    finally:
        engine.stop()


def test_text_stop_sequences_end_the_answer(parts):
    lm, detok = parts
    engine = Engine(lm, detok, slots=1).start()
    try:
        q = queue.Queue()
        engine.submit(_job([1, 5, 9, 2], q.put, 60, audio_out=False, drafting="all"))
        full = drain(q)[-1]
        stop = full.text[10:13]
        cut = full.text.index(stop)
        q = queue.Queue()
        engine.submit(_job([1, 5, 9, 2], q.put, 60, audio_out=False, stop_text=("never there", stop), drafting="all"))
        events = drain(q)
        done = events[-1]
        assert done.finish_reason == "stop" and done.text == full.text[:cut]
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == done.text
        assert len(done.tokens) < len(full.tokens)
    finally:
        engine.stop()
