"""Limits before work: a full server answers 503 before it reads the body; input audio is refused from its header
(sample rate, channels, total seconds) before it is decoded; the number of audio parts is bounded; unknown fields
are refused. The shared server: max_audio_seconds 2, max_audio_parts 2, max_sample_rate 48000, body 200 kB."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch

from tests.audio.conftest import speechlike
from tests.serve.conftest import wait_idle
from tests.serve.test_errors import AUTH, _chat, _error, _open_stream, _user


def _encoded(seconds: float, sr: int = 16000, fmt: str = "WAV", channels: int = 1, seed: int = 5) -> str:
    x = speechlike(seconds, seed=seed, sr=sr).astype(np.float32)
    data = np.stack([x] * channels, axis=1) if channels > 1 else x
    buf = io.BytesIO()
    sf.write(buf, data, sr, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def _part(data: str, fmt: str = "wav") -> dict:
    return {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}


def test_a_full_server_answers_503_before_reading_the_body(served):
    wait_idle(served)
    with httpx.Client(base_url=served.url, timeout=30) as c1, httpx.Client(base_url=served.url, timeout=30) as c2:
        a, b = _open_stream(c1), _open_stream(c2)  # both slots busy, no queue
        _error(_chat(served, None, raw=b"{not json"), 503, "server_overloaded")  # not parsed: not a 400
        _error(_chat(served, None, raw=b"x" * 300_000), 503, "server_overloaded")  # not read: not a 413
        a[0].__exit__(None, None, None)
        b[0].__exit__(None, None, None)
    wait_idle(served)


def test_a_high_sample_rate_is_refused(served):
    err = _error(_chat(served, _user(_part(_encoded(0.3, sr=96000)))), 400, "unsupported_sample_rate",
                 "messages[0].content[0].input_audio.data")
    assert "96000 Hz" in err["message"] and "48000" in err["message"]
    tiny_flac = _encoded(0.05, sr=655350, fmt="FLAC", seed=1)  # a few kB that would decode to 33k samples
    _error(_chat(served, _user(_part(tiny_flac, "flac"))), 400, "unsupported_sample_rate")


def test_limits_come_from_the_header_before_decoding(monkeypatch):
    """Nothing is decoded when the header already says no: a rate over the limit, too many channels, too long."""
    from vita_audio.serve.audio import AudioLimits, read_input_audio

    def no_decoding(*_a, **_kw):
        raise AssertionError("audio was decoded")

    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    limits = AudioLimits(max_seconds=2.0, max_sample_rate=48000)
    for data, code in ((_encoded(0.05, sr=655350, fmt="FLAC"), "unsupported_sample_rate"),
                       (_encoded(0.2, channels=3), "invalid_audio"),
                       (_encoded(2.5), "audio_too_long")):
        with pytest.raises(Exception) as err:
            read_input_audio([(data, None, "p")], 16000, limits)
        assert getattr(err.value, "code", None) == code, err.value


def test_the_audio_parts_of_a_request_share_one_length_limit(served):
    parts = [_part(_encoded(1.5, seed=s)) for s in (1, 2)]  # 1.5 s each, 3 s together: over 2 s
    err = _error(_chat(served, _user(*parts)), 400, "audio_too_long", "messages[0].content[1].input_audio.data")
    assert "at most 2 s" in err["message"]
    from vita_audio.serve.audio import AudioLimits, read_input_audio

    decoded = read_input_audio([(_encoded(0.5, seed=s), None, "p") for s in (1, 2)], 16000,
                               AudioLimits(max_seconds=2.0, max_sample_rate=48000))
    assert [w.shape for w in decoded] == [torch.Size([8000])] * 2


def test_too_many_audio_parts(served):
    short = _part(_encoded(0.3))
    _error(_chat(served, _user(short, short, short)), 400, "too_many_audio_parts",
           "messages[0].content[2].input_audio")


@pytest.mark.parametrize("body, param", [
    ({"temprature": 0.5}, "temprature"),
    ({"audio": {"format": "wav", "speed": 2}}, "audio.speed"),
    ({"stream_options": {"include_usage": True, "chunk_size": 3}}, "stream_options.chunk_size"),
])
def test_unknown_fields_are_refused(served, body, param):
    err = _error(_chat(served, {**_user({"type": "text", "text": "Hi."}), **body}), 400, "unknown_parameter", param)
    assert "unknown field" in err["message"]


def test_unknown_message_and_part_fields_are_refused(served):
    msg = {"role": "user", "content": "Hi.", "tool_calls": []}
    _error(_chat(served, {"model": "vita-audio", "messages": [msg], "max_tokens": 4}), 400, "unknown_parameter",
           "messages[0].tool_calls")
    part = {"type": "text", "text": "Hi.", "cache_control": {"type": "ephemeral"}}
    _error(_chat(served, _user(part)), 400, None, "messages[0].content[0]")


def test_wrong_types_name_their_field(served):
    text = {"type": "text", "text": "Hi."}
    _error(_chat(served, {**_user(text), "stream": "yes"}), 400, None, "stream")
    _error(_chat(served, {**_user(text), "max_tokens": "8"}), 400, None, "max_tokens")
    _error(_chat(served, {**_user(text), "modalities": ["text", "video"]}), 400, None, "modalities[1]")
    r = httpx.post(f"{served.url}/v1/chat/completions", headers=AUTH, timeout=30,
                   json={**_user(text), "audio": {"format": "wav", "voice": "alloy"}, "user": "u1"})
    assert r.status_code == 200, r.text  # accepted, ignored: one voice; `user` changes nothing
