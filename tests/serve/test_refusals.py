"""Say no to what cannot be honoured: OpenAI fields the server does not implement get OpenAI's 400 with the field as
`param` (at their no-op values they pass); sampling errors name their own field; `stop` strings end the answer;
`temperature: 0` is greedy without the server's default repetition penalty."""

from __future__ import annotations

import httpx
import pytest

from tests.serve.conftest import API_KEY, Served, serve_lm, with_head_bias
from tests.serve.test_errors import AUTH, _chat, _error
from vita_audio.inference import SpeechLM
from vita_audio.serve import ServeSettings, create_app

TEXT = {"model": "vita-audio", "messages": [{"role": "user", "content": "Tell me something."}], "max_tokens": 24}


@pytest.mark.parametrize("field, value", [
    ("n", 2), ("logprobs", True), ("top_logprobs", 3),
    ("tools", [{"type": "function", "function": {"name": "f", "parameters": {}}}]), ("tool_choice", "auto"),
    ("response_format", {"type": "json_object"}), ("presence_penalty", 0.5), ("frequency_penalty", -0.2),
    ("logit_bias", {"50": 10}), ("store", True), ("reasoning_effort", "low"),
])
def test_unsupported_fields_are_refused(served, field, value):
    err = _error(_chat(served, {**TEXT, field: value}), 400, "unsupported_parameter", field)
    assert err["type"] == "invalid_request_error" and "not supported" in err["message"]


def test_unsupported_fields_at_their_no_op_values_pass(served):
    body = {**TEXT, "n": 1, "logprobs": False, "tools": [], "tool_choice": "none", "presence_penalty": 0,
            "frequency_penalty": 0.0, "response_format": {"type": "text"}, "logit_bias": {}, "store": False,
            "parallel_tool_calls": False, "metadata": {"k": "v"}, "service_tier": "auto"}
    r = _chat(served, body)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("field, value", [
    ("temperature", -1), ("temperature", 3), ("top_p", 5), ("top_p", 0), ("top_k", -1),
    ("repetition_penalty", 0), ("seed", "x"), ("seed", -1),
])
def test_sampling_errors_name_their_field(served, field, value):
    _error(_chat(served, {**TEXT, field: value}), 400, None, field)


@pytest.fixture(scope="module")
def greedy_answer(served):
    r = httpx.post(f"{served.url}/v1/chat/completions", headers=AUTH, timeout=60,
                   json={**TEXT, "max_tokens": 40, "temperature": 0})
    assert r.status_code == 200, r.text
    return r.json()


def test_temperature_zero_is_greedy_without_the_default_penalty():
    """The server's default repetition penalty (1.05) is a sampling default: `temperature: 0` is the argmax of the
    unpenalised distribution (as `Sampling.greedy()`), unless the request asks for a penalty. The model's head
    favours token 300 slightly over 301: unpenalised, 300 forever; penalised, 300 and 301 take turns."""
    lm = with_head_bias(serve_lm(), {300: 10.0, 301: 9.7})
    settings = ServeSettings(stop_ids=[], max_tokens=8, sampling={"repetition_penalty": 1.05}, mode="vanilla")
    with Served(create_app(SpeechLM(lm), settings)) as s:
        def ids(**kw):
            r = httpx.post(f"{s.url}/v1/chat/completions", timeout=30, json={**TEXT, "max_tokens": 6, **kw})
            assert r.status_code == 200, r.text
            return r.json()["choices"][0]["message"]["content"]

        greedy, penalised = ids(temperature=0), ids(temperature=0, repetition_penalty=1.05)
    tok = lm.backbone.tokenizer
    assert greedy == tok.decode([300] * 6) and penalised != greedy


@pytest.mark.parametrize("stream", [False, True])
def test_stop_strings_cut_the_answer(served, greedy_answer, stream):
    full = greedy_answer["choices"][0]["message"]["content"]
    stop = full[12:15]
    body = {**TEXT, "max_tokens": 40, "temperature": 0, "stop": [stop, "never in there"], "stream": stream}
    if not stream:
        r = _chat(served, body)
        assert r.status_code == 200, r.text
        choice = r.json()["choices"][0]
        text, finish = choice["message"]["content"], choice["finish_reason"]
    else:
        import openai

        with openai.OpenAI(base_url=f"{served.url}/v1", api_key=API_KEY, max_retries=0, timeout=60) as c:
            chunks = list(c.chat.completions.create(**{k: v for k, v in body.items()}))
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1]
    assert text == full[: full.index(stop)] and finish == "stop"
    _error(_chat(served, {**TEXT, "stop": ["a", "b", "c", "d", "e"]}), 400, None, "stop")
    _error(_chat(served, {**TEXT, "stop": [""]}), 400, None, "stop")
