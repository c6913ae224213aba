"""A Plus checkpoint served: input audio goes through the checkpoint's encoder (no audio tokenizer), and requests
batched together each get the answer the Python API gives."""

from __future__ import annotations

import base64
import concurrent.futures

import openai
import pytest
import torch

from tests.audio.conftest import speechlike
from tests.model.test_plus import plus_lm
from tests.serve.conftest import Served
from vita_audio.audio.io import write_audio
from vita_audio.checkpoint import export_pretrained
from vita_audio.inference import Sampling, SpeechLM, load_model
from vita_audio.serve import create_app
from vita_audio.serve.settings import ServeSettings

GREEDY = {"temperature": 0, "extra_body": {"repetition_penalty": 1.0}}


@pytest.fixture(scope="module")
def plus(tmp_path_factory):
    root = tmp_path_factory.mktemp("plus_serve")
    hf = export_pretrained(plus_lm(num_modules=2), root / "hf", interleave_ratio=[1, 2])
    wavs = [write_audio(root / f"q{i}.wav", torch.from_numpy(speechlike(0.6 + 0.3 * i, seed=i)), 16000)
            for i in range(2)]
    speech = SpeechLM(load_model(hf))  # no tokenizer, no detokenizer: text answers
    with Served(create_app(speech, ServeSettings(stop_ids=[], max_tokens=12, slots=2, max_batch=2,
                                                 batch_window_s=0.5))) as s:
        yield s, speech, wavs


def _part(wav) -> dict:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav.read_bytes()).decode(),
                                                   "format": "wav"}}


def test_plus_server_answers_as_the_python_api_also_batched(plus):
    served, speech, wavs = plus
    want = [speech.run("s2s", str(w), max_new_tokens=12, sampling=Sampling.greedy(), stop_ids=[]).text for w in wavs]
    with openai.OpenAI(base_url=f"{served.url}/v1", api_key="x", max_retries=0, timeout=60) as client:
        def ask(w):
            r = client.chat.completions.create(model="vita-audio", messages=[{"role": "user", "content": [_part(w)]}],
                                               modalities=["text"], max_tokens=12, **GREEDY)
            return r.choices[0].message.content

        assert ask(wavs[0]) == want[0]
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # sent together: one batched prefill, two rows
            got = list(pool.map(ask, wavs))
    assert got == want
