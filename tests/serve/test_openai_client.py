"""The server driven by the official `openai` client (PyPI), unchanged: models, chat completions with text and
audio in, text and audio out, streamed and not, multi-turn, the API key."""

from __future__ import annotations

import base64
import io

import numpy as np
import openai
import pytest
import soundfile as sf

from tests.serve.conftest import API_KEY, wait_idle
from vita_audio.audio.builtin import BuiltinDetokenizer, BuiltinTokenizer
from vita_audio.inference import Sampling, SpeechLM, load_model

GREEDY = {"temperature": 0, "extra_body": {"repetition_penalty": 1.0}}


@pytest.fixture(scope="module")
def client(served):
    with openai.OpenAI(base_url=f"{served.url}/v1", api_key=API_KEY, max_retries=0, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def question(artefacts):
    return {"type": "input_audio",
            "input_audio": {"data": base64.b64encode(artefacts["wav"].read_bytes()).decode(), "format": "wav"}}


@pytest.fixture(scope="module")
def reference(artefacts):
    """`SpeechLM.run` of the same question, greedy: what the server must answer."""
    codec = str(artefacts["codec"])
    speech = SpeechLM(load_model(artefacts["hf"]), BuiltinTokenizer(codec), BuiltinDetokenizer(codec))
    return speech.run("s2s", str(artefacts["wav"]), max_new_tokens=40, sampling=Sampling.greedy(), stop_ids=[])


def test_models(client):
    assert [m.id for m in client.models.list()] == ["vita-audio"]
    assert client.models.retrieve("vita-audio").id == "vita-audio"


def test_speech_in_speech_out_equals_the_python_api(client, question, reference):
    r = client.chat.completions.create(model="vita-audio", messages=[{"role": "user", "content": [question]}],
                                       modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"},
                                       max_tokens=40, **GREEDY)
    msg = r.choices[0].message
    assert msg.audio.transcript == reference.text and r.usage.completion_tokens == 40
    assert r.choices[0].finish_reason == "length"
    wav, sr = sf.read(io.BytesIO(base64.b64decode(msg.audio.data)), dtype="float32")
    assert sr == 16000 and len(wav) == reference.wav.numel()
    assert np.abs(wav - reference.wav.numpy()).max() < 2e-4  # int16 rounding


def test_streaming_deltas_rebuild_the_answer(client, question, reference):
    stream = client.chat.completions.create(model="vita-audio", messages=[{"role": "user", "content": [question]}],
                                            modalities=["text", "audio"], audio={"voice": "alloy", "format": "pcm16"},
                                            max_tokens=40, stream=True, stream_options={"include_usage": True},
                                            **GREEDY)
    text, pcm, kinds, usage, finish = "", b"", [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if not chunk.choices:
            continue
        audio = chunk.choices[0].delta.audio  # openai's ChoiceDeltaAudio: id, data, expires_at, transcript
        finish = chunk.choices[0].finish_reason or finish
        if audio is not None and audio.transcript:
            text += audio.transcript
            kinds.append("text")
        if audio is not None and audio.data:
            pcm += base64.b64decode(audio.data)
            kinds.append("audio")
    assert text == reference.text and finish == "length" and usage.completion_tokens == 40
    assert kinds.count("audio") > 1  # audio arrives chunk by chunk, not at the end
    wav = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32767
    assert len(wav) == reference.wav.numel() and np.abs(wav - reference.wav.numpy()).max() < 2e-4


def test_text_in_text_out(client):
    r = client.chat.completions.create(model="vita-audio", messages=[{"role": "user", "content": "Hello there."}],
                                       max_tokens=12, **GREEDY)
    assert r.choices[0].message.audio is None and isinstance(r.choices[0].message.content, str)
    assert r.usage.completion_tokens == 12
    parts = [c.choices[0].delta.content for c in client.chat.completions.create(
        model="vita-audio", messages=[{"role": "user", "content": "Hello there."}], max_tokens=12, stream=True,
        **GREEDY) if c.choices and c.choices[0].delta.content]
    assert "".join(parts) == r.choices[0].message.content


def test_multi_turn_with_the_previous_answer_by_audio_id(client, question):
    first = client.chat.completions.create(model="vita-audio", messages=[{"role": "user", "content": [question]}],
                                           modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"},
                                           max_tokens=16, **GREEDY)
    history = [{"role": "user", "content": [question]},
               {"role": "assistant", "audio": {"id": first.choices[0].message.audio.id}},
               {"role": "user", "content": [{"type": "text", "text": "And then?"}, question]}]
    second = client.chat.completions.create(model="vita-audio", messages=history, modalities=["text", "audio"],
                                            audio={"voice": "alloy", "format": "pcm16"}, max_tokens=16, **GREEDY)
    assert second.usage.prompt_tokens > 2 * first.usage.prompt_tokens  # the whole conversation was the prompt
    assert len(base64.b64decode(second.choices[0].message.audio.data)) > 0


@pytest.mark.parametrize("mode", ["vanilla", "boost", "turbo", "verified"])
def test_mode_is_a_request_field(client, mode):
    r = client.chat.completions.create(model="vita-audio", messages=[{"role": "user", "content": "Hi."}],
                                       modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"},
                                       max_tokens=22, extra_body={"mode": mode, "drafting": "all"}, temperature=0)
    stats = r.model_extra["vita"]
    assert stats["mode"] == mode and r.usage.completion_tokens == 22
    # 22 tokens: Vanilla M x 22; Boost M m*10 MMMM m*7; Turbo M m*10 M m*10
    forwards = {"vanilla": 22, "boost": 5, "turbo": 2}.get(mode)
    if forwards is not None:
        assert stats["backbone_forwards"] == forwards
    assert stats["first_audio_forwards"] >= 1  # (1 in Boost / Turbo when the first MCTP run is audio)


def test_a_wrong_or_missing_key_is_refused(served):
    for key in ("wrong", ""):
        with openai.OpenAI(base_url=f"{served.url}/v1", api_key=key or "x", max_retries=0,
                           default_headers={} if key else {"Authorization": ""}) as c:
            with pytest.raises(openai.AuthenticationError) as err:
                c.models.list()
            assert err.value.status_code == 401 and err.value.body["code"] == "invalid_api_key"
    wait_idle(served)


def test_drafting_is_a_request_field(client):
    """`drafting` reaches the decoder: on the random tiny model (which never opens an audio span) "audio" leaves every
    token to the backbone, "all" lets the MCTP steps write them; anything else is a 400 naming the field."""
    def forwards(drafting):
        r = client.chat.completions.create(model="vita-audio", messages=[{"role": "user", "content": "Hi."}],
                                           max_tokens=22, extra_body={"mode": "turbo", "drafting": drafting},
                                           temperature=0)
        return r.model_extra["vita"]["backbone_forwards"]

    assert forwards("all") == 2 and forwards("audio") == 22
    with pytest.raises(openai.BadRequestError) as err:
        forwards("most")
    assert err.value.body["param"] == "drafting"
