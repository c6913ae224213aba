"""Bad input, each answered with an OpenAI-style error body: not JSON, undecodable / empty / too long audio, an
unknown mode, a too large body, a missing key, a disconnect mid-stream (cancelled, slot freed), more concurrent
requests than slots (503)."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.serve.conftest import API_KEY, wait_idle

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _audio(data: str, fmt: str = "wav") -> dict:
    return {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}


def _chat(served, body, headers=AUTH, raw: bytes | None = None) -> httpx.Response:
    kw = {"content": raw, "headers": {**headers, "Content-Type": "application/json"}} if raw is not None else \
        {"json": body, "headers": headers}
    return httpx.post(f"{served.url}/v1/chat/completions", timeout=30, **kw)


def _error(r: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code is not None:
        assert err["code"] == code, err
    if param is not None:
        assert err["param"] == param, err
    return err


def _user(*parts) -> dict:
    return {"model": "vita-audio", "messages": [{"role": "user", "content": list(parts)}], "max_tokens": 8}


def test_body_that_is_not_json(served):
    _error(_chat(served, None, raw=b"{not json"), 400, "invalid_json")
    _error(_chat(served, None, raw=b"\xff\xfe"), 400, "invalid_json")
    _error(_chat(served, None, raw=b"[1, 2]"), 400)


def test_audio_that_is_not_audio(served):
    err = _error(_chat(served, _user(_audio(base64.b64encode(b"RIFF but not a wav at all").decode()))), 400,
                 "invalid_audio", "messages[0].content[0].input_audio.data")
    assert "not decodable audio" in err["message"]
    _error(_chat(served, _user(_audio("@@@ not base64 @@@"))), 400, "invalid_audio")
    _error(_chat(served, _user(_audio("x", fmt="mp3"))), 400, "unsupported_audio_format")


def test_empty_audio(served, artefacts):
    _error(_chat(served, _user(_audio(""))), 400, "empty_audio")
    header_only = artefacts["wav"].read_bytes()[:44]  # a wav header with no samples
    err = _error(_chat(served, _user(_audio(base64.b64encode(header_only).decode()))), 400)
    assert err["code"] in ("invalid_audio", "empty_audio")


def test_audio_over_the_length_limit(served, artefacts):
    long_b64 = base64.b64encode(artefacts["long_wav"].read_bytes()).decode()  # 3 s, the limit is 2 s
    err = _error(_chat(served, _user(_audio(long_b64))), 400, "audio_too_long")
    assert "at most 2 s" in err["message"]


def test_unknown_mode_and_other_fields(served):
    text = {"type": "text", "text": "Hi."}
    err = _error(_chat(served, {**_user(text), "mode": "warp"}), 400, "invalid_mode", "mode")
    assert "vanilla" in err["message"]
    _error(_chat(served, {**_user(text), "schedule": [1, 20]}), 400, "invalid_schedule", "schedule")  # 10 modules
    _error(_chat(served, {**_user(text), "mode": "verified", "schedule": [1, 4]}), 400, "invalid_schedule",
           "schedule")  # verified drafts with every module: no schedule
    _error(_chat(served, {**_user(text), "model": "gpt-4o"}), 404, "model_not_found", "model")
    _error(_chat(served, {**_user(text), "max_tokens": 10**6}), 400, None, "max_tokens")
    _error(_chat(served, {**_user(text), "stream": True, "modalities": ["text", "audio"],
                          "audio": {"format": "wav"}}), 400, None, "audio.format")
    _error(_chat(served, {"model": "vita-audio", "messages": []}), 400, None, "messages")
    _error(_chat(served, {"model": "vita-audio", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
           400, None, "messages[0].content[0]")


def test_body_over_the_size_limit(served):
    big = {"model": "vita-audio", "messages": [{"role": "user", "content": "x" * 300_000}]}  # limit: 200 kB
    _error(_chat(served, big), 413, "request_too_large")


def test_missing_key_and_unknown_route(served):
    _error(_chat(served, _user({"type": "text", "text": "Hi."}), headers={}), 401, "invalid_api_key")
    _error(httpx.get(f"{served.url}/v1/models", headers={"Authorization": "Bearer nope"}), 401, "invalid_api_key")
    _error(httpx.get(f"{served.url}/v1/nothing-here", headers=AUTH), 404)
    assert httpx.get(f"{served.url}/health").json()["status"] == "ok"  # health needs no key


def _open_stream(client: httpx.Client, max_tokens: int = 600):
    body = {"model": "vita-audio", "messages": [{"role": "user", "content": "Tell me a long story."}],
            "stream": True, "modalities": ["text", "audio"], "audio": {"format": "pcm16"}, "max_tokens": max_tokens,
            "mode": "vanilla"}
    cm = client.stream("POST", f"{served_url(client)}/v1/chat/completions", json=body, headers=AUTH)
    r = cm.__enter__()
    assert r.status_code == 200
    lines = r.iter_lines()
    for line in lines:  # the role chunk, then the first content chunk: the generation runs
        if line.startswith("data:") and '"delta": {"role"' not in line:
            break
    return cm, lines  # keep the line iterator alive: dropping it closes the response


def served_url(client: httpx.Client) -> str:
    return str(client.base_url).rstrip("/")


def test_disconnect_cancels_and_more_requests_than_slots_get_503(served):
    wait_idle(served)
    before = served.engine.stats()
    with httpx.Client(base_url=served.url, timeout=30) as c1, httpx.Client(base_url=served.url, timeout=30) as c2:
        a, b = _open_stream(c1), _open_stream(c2)  # both slots busy (600 Vanilla tokens take seconds)
        err = _error(_chat(served, _user({"type": "text", "text": "Hi."})), 503, "server_overloaded")
        assert "slots are busy" in err["message"]
        assert served.engine.stats()["active"] == 2
        a[0].__exit__(None, None, None)  # the clients go away mid-stream
        b[0].__exit__(None, None, None)
    st = wait_idle(served)
    assert st["cancelled"] - before["cancelled"] == 2 and st["completed"] == before["completed"]
    r = _chat(served, _user({"type": "text", "text": "Hi."}))  # the freed slots serve the next request
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 8


def test_error_mid_stream_is_an_opaque_sse_error_event_with_the_request_id(served, monkeypatch, caplog):
    """A failure inside the engine after the stream started arrives as one OpenAI error event that names the
    request id only; the exception's class and message are in the server log under that id."""
    import vita_audio.serve.engine as engine_mod

    def failing(*_args, **_kw):
        raise RuntimeError("boom at /secret/path, shape (3, 7)")

    monkeypatch.setattr(engine_mod, "Group", failing)
    body = {"model": "vita-audio", "messages": [{"role": "user", "content": "Hi."}], "stream": True,
            "max_tokens": 8}
    with caplog.at_level("ERROR", logger="vita_audio.serve"):
        with httpx.stream("POST", f"{served.url}/v1/chat/completions", json=body, headers=AUTH, timeout=30) as r:
            rid = r.headers["x-request-id"]
            events = [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:")]
    monkeypatch.undo()
    err = events[-1]["error"]
    assert err["type"] == "server_error" and err["code"] == "internal_error" and rid in err["message"]
    assert "boom" not in err["message"] and "RuntimeError" not in err["message"] and "(3, 7)" not in err["message"]
    logged = [rec for rec in caplog.records if rid in rec.getMessage()]
    assert logged and "boom at /secret/path" in logged[0].getMessage()
    wait_idle(served)
    assert served.engine.alive()


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/static/capture-worklet.js"])
def test_the_page_is_served(served, path):
    r = httpx.get(f"{served.url}{path}", timeout=10)
    assert r.status_code == 200 and len(r.content) > 100


def test_an_audio_only_earlier_answer_may_have_empty_text(served):
    turns = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": ""},
             {"role": "user", "content": "And?"}]
    r = _chat(served, {"model": "vita-audio", "messages": turns, "max_tokens": 4})
    assert r.status_code == 200, r.text
    _error(_chat(served, {"model": "vita-audio", "messages": [{"role": "user", "content": " "}]}), 400, None,
           "messages[0].content")
