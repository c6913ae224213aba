"""Binding, liveness and start-up: a non-loopback host needs a key (from the environment only) or an explicit
opt-in; /health says when the engine thread is dead; a request past its deadline fails with a clear error; an idle
SSE stream sends keep-alive comments; without the `serve` extra, importing the server names the command."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from tests.serve.conftest import Served, api_key_env, serve_cfg, serve_lm
from vita_audio.inference import SpeechLM
from vita_audio.serve import ServeSettings, create_app


def test_a_public_host_needs_a_key_or_the_opt_in(artefacts):
    from vita_audio.cli.serve import build_app

    with api_key_env(None):
        with pytest.raises(ValueError, match="VITA_API_KEY"):
            build_app(serve_cfg(artefacts, ["host=0.0.0.0"]))
        assert build_app(serve_cfg(artefacts, ["host=0.0.0.0", "server.allow_public_without_key=true"]))
        assert build_app(serve_cfg(artefacts, ["host=localhost"]))
    with api_key_env("k"):
        assert build_app(serve_cfg(artefacts, ["host=0.0.0.0"])).state.settings.api_key == "k"
    for host in ("::", "192.168.1.5", "my-box.lan"):
        with pytest.raises(ValueError, match="no API key"):
            ServeSettings(host=host)


def test_a_key_given_as_a_setting_is_refused(artefacts):
    from vita_audio.cli.serve import build_app

    with api_key_env(None), pytest.raises(ValueError, match="export VITA_API_KEY"):
        build_app(serve_cfg(artefacts, ["server.api_key=secret"]))


@pytest.fixture
def small():
    """A text-only server of a tiny random model, one slot, short keep-alive and deadline."""
    def make(**kw):
        settings = ServeSettings(**{"stop_ids": [], "max_tokens": 2000, "slots": 1, "max_queue": 2, **kw})
        return Served(create_app(SpeechLM(serve_lm()), settings))

    return make


def _body(**kw) -> dict:
    return {"model": "vita-audio", "messages": [{"role": "user", "content": "Hi."}], "mode": "vanilla", **kw}


def test_health_reports_a_dead_engine(small, monkeypatch):
    with small() as s:
        assert httpx.get(f"{s.url}/health").json()["status"] == "ok"

        def broken(_tick):
            raise RuntimeError("scheduler bug")

        monkeypatch.setattr(s.engine, "_pick", broken)
        r = httpx.post(f"{s.url}/v1/chat/completions", json=_body(max_tokens=4), timeout=30)
        assert r.status_code == 503 and r.json()["error"]["code"] == "engine_unavailable"
        health = httpx.get(f"{s.url}/health")
        assert health.status_code == 503 and health.json()["status"] == "error"
        assert health.json()["engine"] == "stopped"
        r = httpx.post(f"{s.url}/v1/chat/completions", json=_body(max_tokens=4), timeout=30)
        assert r.status_code == 503 and r.json()["error"]["code"] == "engine_unavailable"


def test_a_request_past_its_deadline_fails(small):
    with small(request_timeout_s=0.4) as s:
        t0 = time.monotonic()
        r = httpx.post(f"{s.url}/v1/chat/completions", json=_body(max_tokens=2000), timeout=30)
        assert r.status_code == 504 and r.json()["error"]["code"] == "request_timeout", r.text
        assert "request_timeout_s" in r.json()["error"]["message"] and time.monotonic() - t0 < 10
        deadline = time.monotonic() + 10
        while s.engine.stats()["slots_used"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert s.engine.stats()["slots_used"] == 0


def test_an_idle_stream_sends_keep_alive_comments(small):
    """The one slot is busy: the second stream waits in the queue, and says so every keepalive_s."""
    with small(keepalive_s=0.05) as s, httpx.Client(base_url=s.url, timeout=30) as c1, \
            httpx.Client(base_url=s.url, timeout=30) as c2:
        with c1.stream("POST", "/v1/chat/completions", json=_body(max_tokens=2000, stream=True)) as first:
            busy = first.iter_lines()  # kept: dropping the iterator closes the response
            next(busy)
            with c2.stream("POST", "/v1/chat/completions", json=_body(max_tokens=2000, stream=True)) as second:
                lines = second.iter_lines()
                seen = [next(lines) for _ in range(6)]
    assert any(line == ": keep-alive" for line in seen), seen


def test_without_the_serve_extra_the_error_names_the_command():
    code = "import sys; sys.modules['fastapi'] = None; import vita_audio.serve"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError") and "'serve' extra" in last and 'pip install -e ".[serve]"' in last


def test_serve_py_without_the_serve_extra_says_so_in_one_line():
    """`python serve.py` (after `make demo`, which skips the extra) ends with the message alone, no traceback."""
    code = "import sys; sys.modules['fastapi'] = None; import vita_audio.cli.serve"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and 'pip install -e ".[serve]"' in r.stderr.strip().splitlines()[-1]
