"""A served tiny model: random 10-module VITA-Audio LM exported like a stage, a random tiny codec, uvicorn on
127.0.0.1 on a free port in a thread (package-scoped: built once, a second or two).

The model has 2,048 audio codes against ~1,000 text tokens, so a random model's answers mix text and audio
whichever head a decode step uses (the restricted audio head or the full one)."""

from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import uvicorn
from hydra import compose, initialize_config_dir

from dataclasses import replace

from tests.audio.conftest import TINY
from tests.audio.conftest import speechlike
from tests.conftest import TINY_CONFIG
from vita_audio.audio.builtin import save_codec
from vita_audio.audio.builtin.model import CodecModel
from vita_audio.audio.io import write_audio
from vita_audio.checkpoint import export_pretrained
from vita_audio.inference import Decoder
from vita_audio.serve.engine import Done
from vita_audio.cli.common import CONFIG_DIR
from vita_audio.model.backbone import Backbone
from vita_audio.model.lm import VitaAudioLM
from vita_audio.model.mctp import MCTPStack

API_KEY = "test-key"
MODULES = 10  # Boost and Turbo run 10 MCTP steps in a row
CODEBOOK = 2048
TINY_CODEC = replace(TINY, codebook_size=CODEBOOK)


def serve_lm(num_modules: int = MODULES, seed: int = 0) -> VitaAudioLM:
    bb = Backbone(CODEBOOK, config=dict(TINY_CONFIG), tokenizer="tiny", seed=seed)
    torch.manual_seed(seed)
    return VitaAudioLM(bb, MCTPStack.for_backbone(bb, num_modules)).eval()


def biased_lm(num_modules: int = 4, seed: int = 0) -> VitaAudioLM:
    """`serve_lm` whose LM head is sharpened (weights x10) and biased towards the audio markers, the stop id, a few
    codes and a few text tokens: greedy and sampled answers then open and close audio spans and stop (with the
    default stop ids) at different steps from row to row, deterministically (the tests assert it)."""
    lm = serve_lm(num_modules, seed)
    av = lm.backbone.audio_vocab
    stops = Decoder(lm, [[1]], schedule=[1, 0], max_new_tokens=1).stop_ids  # the default stop ids
    bias = {av.begin_of_audio: 3.0, av.end_of_audio: 3.0, **{i: 2.2 for i in stops},
            **{av.audio_offset + k: 2.0 for k in range(8)}, **{300 + k: 2.0 for k in range(6)}}
    return with_head_bias(lm, bias, scale=10.0)


def with_head_bias(lm: VitaAudioLM, bias: dict[int, float], scale: float = 1.0) -> VitaAudioLM:
    """Replace the LM head (shared by the backbone and the MCTP steps) by weights x `scale` plus `bias` {id: value}."""
    old = lm.backbone.lm_head
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight * scale)
        head.bias.zero_()
        head.bias[list(bias)] = torch.tensor(list(bias.values()))
    lm.backbone.model.set_output_embeddings(head)
    return lm.eval()


def drain(events, timeout: float = 60.0) -> list:
    """An engine job's events until its `Done` (or the exception that ended it), from the queue its sink fills."""
    out = []
    while True:
        ev = events.get(timeout=timeout)
        out.append(ev)
        if isinstance(ev, (Done, Exception)):
            return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """uvicorn serving `app` in a thread; `url` is its base URL."""

    def __init__(self, app) -> None:
        self.app, self.port = app, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start within 30 s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    @property
    def engine(self):
        return self.app.state.engine


@pytest.fixture(scope="package")
def artefacts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve")
    torch.manual_seed(0)
    codec = save_codec(CodecModel(TINY_CODEC).eval(), root / "codec")
    hf = export_pretrained(serve_lm(), root / "hf", interleave_ratio=[1, 10, 4, 10])
    wav = write_audio(root / "question.wav", torch.from_numpy(speechlike(1.0, seed=3)), 16000)
    long_wav = write_audio(root / "long.wav", torch.from_numpy(speechlike(3.0, seed=4)), 16000)
    return {"root": root, "codec": codec, "hf": hf, "wav": wav, "long_wav": long_wav}


def serve_cfg(artefacts, overrides=()):
    base = [f"ckpt_path={artefacts['hf']}", f"paths.root_dir={artefacts['root']}",
            f"paths.codec_dir={artefacts['codec']}", f"audio.codebook_size={CODEBOOK}",
            f"audio.frame_rate={TINY_CODEC.frame_rate}", "server.stop_ids=[]", "server.max_tokens=600",
            "server.max_audio_seconds=2.0", "server.max_body_bytes=200000"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="serve", overrides=[*base, *overrides])


@contextmanager
def api_key_env(key: str | None = API_KEY):
    """VITA_API_KEY set to `key` (unset for None) while the settings are built (they read it once)."""
    old = os.environ.pop("VITA_API_KEY", None)
    if key is not None:
        os.environ["VITA_API_KEY"] = key
    try:
        yield
    finally:
        os.environ.pop("VITA_API_KEY", None)
        if old is not None:
            os.environ["VITA_API_KEY"] = old


@pytest.fixture(scope="package")
def served(artefacts):
    """The shared server: an API key, 2 slots, no queue (a third concurrent request gets 503)."""
    from vita_audio.cli.serve import build_app

    cfg = serve_cfg(artefacts, ["server.slots=2", "server.max_queue=0", "server.max_batch=2",
                                "server.max_audio_parts=2", "server.max_sample_rate=48000"])
    with api_key_env():
        app = build_app(cfg)
    with Served(app) as s:
        yield s


def wait_idle(served: Served, timeout: float = 20.0) -> dict:
    """Poll the engine until no row is active or queued (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = served.engine.stats()
        if st["active"] == 0 and st["queued"] == 0:
            return st
        time.sleep(0.02)
    raise AssertionError(f"the engine is still busy after {timeout} s: {served.engine.stats()}")
