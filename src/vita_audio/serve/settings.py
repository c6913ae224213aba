"""Server settings: one dataclass, mirrored one-to-one by the `server:` node of conf/serve.yaml.

Checked at construction, so a server that would be unsafe or cannot honour its own defaults never starts:

    host beyond loopback (0.0.0.0, a LAN address)  needs an API key, or allow_public_without_key=true
    the API key                                    only from the environment variable `api_key_env`
                                                   (a key on the command line shows in `ps` and is saved in
                                                   Hydra's .hydra/overrides.yaml); given as a setting: refused
    sampling defaults                              must build a `Sampling`
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from vita_audio.inference import Sampling


@dataclass
class ServeSettings:
    """What the HTTP layer and the engine need to know.

    Args:
        model_name: the id `/v1/models` lists and requests must name.
        host: the address uvicorn listens on (conf/serve.yaml passes the top-level `host`); only checked here.
        allow_public_without_key: serve a non-loopback `host` without an API key (anyone reaching the port may use
            the model); off by default.
        api_key_env: the environment variable holding the API key; when it is set (non-empty), every /v1 request
            needs `Authorization: Bearer <key>` (else 401).
        api_key: filled from `api_key_env`; giving it as a setting is refused (ValueError).
        slots: rows decoded at once (a finished row of a batch holds its slot until the batch ends); more
            requests wait in the queue.
        max_queue: requests waiting for a slot at most; beyond that a request gets 503 (server_overloaded).
        max_batch: waiting requests with the same decode options are prefilled together, up to this many rows.
        batch_window_s: while more requests are on their way (their audio being encoded), a waiting one is held
            back up to this long so that requests sent together are prefilled as one batch.
        codec_threads: threads synthesising the answers' audio beside decoding (0 = in the decoding thread).
        audio_threads: threads parsing request bodies and decoding / encoding their input audio (a bounded pool).
        max_body_bytes: a larger request body gets 413.
        max_audio_seconds: all input_audio parts of one request together at most this long (else 400).
        max_audio_parts: input_audio parts per request at most.
        max_sample_rate: input audio at a higher sample rate is refused before it is decoded.
        max_tokens: the default (and the upper bound) of a request's max_tokens.
        request_timeout_s: a request not answered this long after it arrived fails (504 request_timeout, or an
            error event mid-stream) and frees its slot.
        keepalive_s: an SSE stream with nothing to send for this long (queued, a long prefill) sends a
            `: keep-alive` comment.
        mode: the default decode mode (vanilla | balance | boost | turbo | verified); None = the checkpoint's.
        sampling: defaults of do_sample / temperature / top_k / top_p / repetition_penalty / seed.
        stop_ids: None = `<|im_end|>` and eos; [] = never stop before max_tokens.
    """

    model_name: str = "vita-audio"
    host: str = "127.0.0.1"
    allow_public_without_key: bool = False
    api_key_env: str = "VITA_API_KEY"
    api_key: str | None = None
    slots: int = 4
    max_queue: int = 16
    max_batch: int = 4
    batch_window_s: float = 0.05
    codec_threads: int = 2
    audio_threads: int = 2
    max_body_bytes: int = 20 * 1024 * 1024
    max_audio_seconds: float = 60.0
    max_audio_parts: int = 8
    max_sample_rate: int = 48000
    max_tokens: int = 512
    request_timeout_s: float = 300.0
    keepalive_s: float = 15.0
    mode: str | None = None
    sampling: dict = field(default_factory=dict)
    stop_ids: list[int] | None = None

    def __post_init__(self) -> None:
        if self.slots < 1 or self.max_batch < 1 or min(self.max_queue, self.batch_window_s, self.codec_threads) < 0:
            raise ValueError(f"slots and max_batch must be >= 1, max_queue, batch_window_s and codec_threads >= 0; "
                             f"got slots={self.slots}, max_batch={self.max_batch}, max_queue={self.max_queue}, "
                             f"batch_window_s={self.batch_window_s}, codec_threads={self.codec_threads}")
        limits = dict(audio_threads=self.audio_threads, max_body_bytes=self.max_body_bytes,
                      max_audio_seconds=self.max_audio_seconds, max_audio_parts=self.max_audio_parts,
                      max_sample_rate=self.max_sample_rate, max_tokens=self.max_tokens,
                      request_timeout_s=self.request_timeout_s, keepalive_s=self.keepalive_s)
        bad = {k: v for k, v in limits.items() if not v > 0}
        if bad:
            raise ValueError(f"server settings {', '.join(bad)} must be > 0, got {bad}")
        try:
            Sampling(**self.sampling)
        except (TypeError, ValueError) as err:
            raise ValueError(f"server.sampling {self.sampling} is not a valid Sampling: {err}") from None
        env_key = (os.environ.get(self.api_key_env) or "").strip() or None
        if self.api_key is not None and self.api_key != env_key:
            raise ValueError(f"server.api_key is not a setting: a key given on the command line or in a config is "
                             f"visible in `ps` and saved in Hydra's .hydra/overrides.yaml. Put it in the "
                             f"environment instead: export {self.api_key_env}=<key>")
        self.api_key = env_key
        if not is_loopback(self.host) and self.api_key is None and not self.allow_public_without_key:
            raise ValueError(f"host={self.host} listens beyond this machine but no API key is set: export "
                             f"{self.api_key_env}=<key> (clients then send Authorization: Bearer <key>), or set "
                             "server.allow_public_without_key=true to let anyone who reaches the port use the model")


def is_loopback(host: str) -> bool:
    """`localhost` or an address in 127.0.0.0/8 / ::1; any other name or address (0.0.0.0, ::, a LAN name) is not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False
